## Reference fits of the categorical (multinomial logit, brms's `categorical` family) mixed model: Laplace
## marginal likelihood from a TMB template.
##
## Run from the repository root:   Rscript tests/data/r/categorical_references.R      (about 2 minutes, 20 s of
## it compiling the TMB template)
## Reads tests/data/categorical_sim.csv (simulated: choice in bus / car / train, x numeric, g group id 0..39;
## 800 rows, 20 per group; supplied as is, not simulated here); writes one tests/data/<case_id>.json per case and
## prints a summary.
##
## Model (K = 3 categories, bus the reference): eta_bus = 0, eta_c = X beta_c + Z b_{c,g} for c in (car, train),
## P(y = k | b) = exp(eta_k) / sum_j exp(eta_j); per group b_g = (b_car,g; b_train,g) (category-major) ~ N(0, Sigma).
## No lme4 / glmmTMB / nnet equivalent with random effects: TMB template tests/data/r/categorical_glmm.cpp,
## compiled by this script (-O0) into tempdir() (or $CATEGORICAL_TMPL_DIR, reused if up to date). Sigma:
##  - independent per category (brms's default, (1 | g) / (x | g)): block diagonal, each category its own
##    unstructured covariance of its terms;
##  - shared ((1 | p | g)): one unstructured covariance over both categories' terms.
## SDs = exp(theta), correlations from an unconstrained parameterisation (TMB's UNSTRUCTURED_CORR one; 2 x 2:
## corr = rho / sqrt(1 + rho^2)). Fit: MakeADFun(random = "b", inner.control = list(tol = 1e-12)) (Laplace;
## the tighter inner tolerance makes the conditional modes exact to ~1e-15, so the logLik agrees with the hand
## computation to ~1e-12 instead of ~1e-10), nlminb (rel.tol 1e-14, iter.max 1e4) from zeros, then Newton steps
## (TMB gradient obj$gr, optimHess Hessian) to max |gradient| < 1e-8; se from TMB::sdreport (SDs and
## correlations by the delta method, ADREPORT).
## Every case is also fitted in the template's spherical parameterisation (spherical = 1, lme4-style: b = L u,
## u ~ N(0, I), L the lower-triangular factor of Sigma, its entries free): the same Laplace logLik (invariant
## under a linear change of the random effects), and finite parameters at the boundary (an SD at 0, a
## correlation at +-1). Where the log-SD fit converges (pdHess) it is the reference and the spherical fit a
## `spherical_check`; where it diverges toward the boundary (categorical_sim_slope: both categories' 2 x 2
## correlations go to +-1) the spherical fit is the reference (`singular`: true) and the log-SD attempt is kept
## in `logsd_fit`.
## Checks in each JSON:
##  - parameterisation_check: the template's joint negative log density at the conditional modes against a
##    sum written out in R (multinomial log-likelihood + MVN log density);
##  - laplace_check: the Laplace logLik recomputed in plain R at the reference estimates (per-group Newton for
##    the q-vector mode with the analytic gradient sum_i z_i (e_{y_i} - p_i) - Sigma^-1 b and Hessian
##    -[sum_i (diag(p_i) - p_i p_i') (x) z_i z_i' + Sigma^-1], non-reference categories only; in u for a
##    singular Sigma);
##  - categorical_sim also carries multinom_check: without random effects, nnet::multinom(choice ~ x) against
##    the template with the random effects removed (use_re = 0, b / theta mapped out), Newton-polished.
##
## Numbers are written as the shortest decimal that round-trips (15-17 significant digits; jsonlite 1.8.4
## alone stops at 15 even with digits = NA), as in more_family_references.R / sequential_references.R.
##
## Tested with R 4.2.2, TMB 1.9.2, nnet 7.3-18, jsonlite 1.8.4 (Debian bookworm packages); g++ for the template.

suppressPackageStartupMessages({
  library(TMB)
  library(nnet)
  library(jsonlite)
})

OUT <- file.path("tests", "data")
RDIR <- file.path(OUT, "r")
stopifnot(dir.exists(OUT), file.exists(file.path(RDIR, "categorical_glmm.cpp")),
          file.exists(file.path(OUT, "categorical_sim.csv")))

versions <- list(
  R = R.version.string,
  TMB = as.character(packageVersion("TMB")),
  jsonlite = as.character(packageVersion("jsonlite")),
  nnet = as.character(packageVersion("nnet"))
)

GTOL <- 1e-8
INNER_TOL <- 1e-12   # TMB's inner Newton (conditional modes): max |gradient| (default 1e-8)
LEVELS <- c("bus", "car", "train")          # bus the reference
CATS <- paste0("mu", LEVELS[-1])            # brms's dpar names: mucar, mutrain
t_start <- proc.time()[["elapsed"]]

## ---------------------------------------------------------------- helpers (from sequential_references.R)

capture <- function(expr) {
  w <- character(); msg <- character()
  val <- withCallingHandlers(expr,
    warning = function(c) { w <<- c(w, conditionMessage(c)); invokeRestart("muffleWarning") },
    message = function(c) { msg <<- c(msg, conditionMessage(c)); invokeRestart("muffleMessage") })
  list(value = val, warnings = w, messages = msg)
}
arr <- function(x) { if (is.null(x)) x <- character(0); I(unname(as.vector(x))) }  # always a JSON array
mat_rows <- function(M) lapply(seq_len(nrow(M)), function(i) arr(M[i, ]))      # [[row], [row], ...]

## Round trip checked with jsonlite's parser (yajl -> C strtod, correctly rounded, as Python's float()).
parse_exact <- function(s) {
  if (length(s) == 0) return(numeric(0))
  as.numeric(jsonlite::fromJSON(paste0("[", paste(s, collapse = ","), "]")))
}
fmt_num <- function(x) {   # shortest of %.15g / %.16g / %.17g that round-trips
  s <- sprintf("%.15g", x)
  fin <- is.finite(x)
  for (dg in c(16, 17)) {
    bad <- rep(FALSE, length(x))
    bad[fin] <- parse_exact(s[fin]) != x[fin]
    s[bad] <- sprintf(paste0("%.", dg, "g"), x[bad])
  }
  stopifnot(all(parse_exact(s[fin]) == x[fin]))
  s[!fin] <- "null"
  s
}
prep_json <- function(x) {
  if (is.list(x) && !is.data.frame(x)) {
    if (length(x) == 0) return(x)
    nm <- names(x); y <- lapply(x, prep_json); names(y) <- nm; return(y)
  }
  if (is.double(x)) {
    s <- fmt_num(as.vector(x))
    if (inherits(x, "AsIs") || length(x) != 1) return(structure(paste0("[", paste(s, collapse = ","), "]"), class = "json"))
    return(structure(s, class = "json"))
  }
  x
}
write_case <- function(out) {
  js <- toJSON(prep_json(out), digits = NA, auto_unbox = TRUE, null = "null", na = "null", pretty = TRUE,
               json_verbatim = TRUE)
  writeLines(js, file.path(OUT, paste0(out$case_id, ".json")))
  stopifnot(fromJSON(file.path(OUT, paste0(out$case_id, ".json")))$logLik == out$logLik)
}

## Newton steps on a TMB objective (exact gradient obj$gr, optimHess Hessian), as sequential_references.R.
newton_tmb <- function(obj, p0, gtol = GTOL, maxit = 50) {
  p <- p0; fp <- obj$fn(p); steps <- 0; status <- "converged"
  for (i in seq_len(maxit)) {
    g <- as.vector(obj$gr(p))
    if (!all(is.finite(g))) { status <- "non-finite gradient"; break }
    if (max(abs(g)) < gtol) break
    H <- optimHess(p, obj$fn, obj$gr)
    dl <- tryCatch(solve(H, g), error = function(e) NULL)
    if (is.null(dl)) { status <- "singular Hessian"; break }
    lam <- 1; ok <- FALSE
    for (k in 1:30) {
      pn <- p - lam * dl; fn <- obj$fn(pn)
      if (is.finite(fn) && fn <= fp + 1e-12) { ok <- TRUE; break }
      lam <- lam / 2
    }
    if (!ok) { status <- "no descent step found"; break }
    p <- pn; fp <- fn; steps <- i
    if (i == maxit) status <- "iteration limit"
  }
  fp <- obj$fn(p); g <- as.vector(obj$gr(p))
  if (status == "converged" && !isTRUE(max(abs(g)) < gtol)) status <- "not converged"
  list(p = p, f = fp, g = g, steps = steps, status = status)
}

## ---------------------------------------------------------------- data

dat <- read.csv(file.path(OUT, "categorical_sim.csv"), colClasses = c(choice = "character"))
stopifnot(nrow(dat) == 800, all(dat$choice %in% LEVELS), length(unique(dat$g)) == 40, all(table(dat$g) == 20))
dat$choice <- factor(dat$choice, LEVELS)
dat$g <- factor(dat$g, sort(unique(dat$g)))
yi <- as.integer(dat$choice) - 1L           # 0 = bus, 1 = car, 2 = train
gi <- as.integer(dat$g) - 1L
NG <- nlevels(dat$g)
X <- model.matrix(~ x, dat); colnames(X) <- c("Intercept", "x")
DATA_NOTE <- paste("simulated data set tests/data/categorical_sim.csv (800 rows: choice in bus / car / train, x",
                   "numeric, g group id 0..39 with 20 rows each), supplied as is (numpy seed 22, category-correlated",
                   "random intercepts and slopes; true fixed effects car (0.4, 0.9), train (-0.3, -0.6), SDs",
                   "(0.8, 0.4, 0.6, 0.3)), not simulated by this script")

## ---------------------------------------------------------------- template

TMPL_DIR <- Sys.getenv("CATEGORICAL_TMPL_DIR", file.path(tempdir(), "categorical_templates"))  # outside the repository
dir.create(TMPL_DIR, showWarnings = FALSE, recursive = TRUE)
local({
  src <- file.path(RDIR, "categorical_glmm.cpp"); dst <- file.path(TMPL_DIR, "categorical_glmm.cpp")
  if (!file.exists(dst) || !identical(readLines(src), readLines(dst))) invisible(file.copy(src, dst, overwrite = TRUE))
  so <- TMB::dynlib(file.path(TMPL_DIR, "categorical_glmm"))
  if (!file.exists(so) || file.mtime(so) < file.mtime(dst)) {
    cat("compiling", src, "...\n")
    rc <- capture(TMB::compile(dst, flags = "-O0"))$value
    if (rc != 0) stop("compilation of ", src, " failed")
  }
  dyn.load(so)
})

## ---------------------------------------------------------------- likelihood in plain R

## n x K log-probabilities of the multinomial logit, eta_nonref n x (K - 1) (reference column 0 prepended)
cat_logp <- function(eta_nonref) {
  E <- cbind(0, eta_nonref)
  mx <- apply(E, 1, max)
  E - (mx + log(rowSums(exp(E - mx))))
}
## correlation matrix from its unconstrained parameters (the template's corr_from: TMB's UNSTRUCTURED_CORR)
corr_from <- function(th, m) {
  L <- diag(m); k <- 0
  for (i in seq_len(m)) for (j in seq_len(i - 1)) { k <- k + 1; L[i, j] <- th[k] }
  C <- L %*% t(L); d <- sqrt(diag(C))
  C / outer(d, d)
}
## Sigma (and sd, Corr) from the template's outer parameters; spherical: Sigma = L L' (L lower triangular,
## diagonal theta, below it rho within the blocks, row-wise), as the template.
Sigma_from <- function(theta, rho, r, Km1, shared, spherical = FALSE) {
  q <- r * Km1; m <- if (shared) q else r; nblk <- if (shared) 1 else Km1; npb <- m * (m - 1) / 2
  if (spherical) {
    L <- matrix(0, q, q)
    for (c in seq_len(nblk)) {
      L0 <- diag(theta[(c - 1) * m + seq_len(m)], m); k <- (c - 1) * npb
      for (i in seq_len(m)) for (j in seq_len(i - 1)) { k <- k + 1; L0[i, j] <- rho[k] }
      L[(c - 1) * m + seq_len(m), (c - 1) * m + seq_len(m)] <- L0
    }
    S <- L %*% t(L); sd <- sqrt(diag(S))
    return(list(Sigma = S, Corr = S / outer(sd, sd), sd = sd, L = L))
  }
  C <- matrix(0, q, q)
  for (c in seq_len(nblk)) {
    ix <- (c - 1) * m + seq_len(m)
    C[ix, ix] <- corr_from(rho[(c - 1) * npb + seq_len(npb)], m)
  }
  sd <- exp(theta)
  list(Sigma = C * outer(sd, sd), Corr = C, sd = sd, L = NULL)
}
mvn_logdens <- function(b, Q, ldS) { q <- length(b); -0.5 * (q * log(2 * pi) + ldS + sum(b * (Q %*% b))) }

## Laplace logLik in plain R (no TMB): per group, the mode of h(b) = sum_i log P(y_i | X_i beta + (I (x) z_i') b)
## + log N(b; 0, Sigma) by Newton with the analytic gradient / Hessian; b category-major (index (c - 1) r + t):
##   dh/db_{c,t} = sum_i z_it (1[y_i = c] - p_ic) - (Sigma^-1 b)_{c,t}
##   -d2h/db db' = sum_i (diag(p_i) - p_i p_i') (x) z_i z_i' + Sigma^-1     (p_i: the K - 1 non-reference probs)
## then sum_g [h(b^) + q log(2 pi) / 2 - log det(-h''(b^)) / 2].
## With L (a singular Sigma = L L', boundary fits) the same in u, b = L u, u ~ N(0, I): gradient L' (.) - u,
## -Hessian L' (sum_i ...) L + I.
laplace_by_hand <- function(y, X, Z, gi, beta, Sigma, L = NULL) {
  Km1 <- ncol(beta); r <- ncol(Z); q <- r * Km1
  XB <- X %*% beta
  if (is.null(L)) { Q <- solve(Sigma); ldS <- as.numeric(determinant(Sigma)$modulus) }
  total <- 0; modes <- matrix(0, q, max(gi) + 1)
  for (gg in seq_len(max(gi) + 1)) {
    rows <- which(gi == gg - 1L); Zg <- Z[rows, , drop = FALSE]
    Yg <- outer(y[rows], seq_len(Km1), "==") * 1
    parts <- function(v) {
      b <- if (is.null(L)) v else as.vector(L %*% v)
      B <- matrix(b, r, Km1)                             # column c: category c's r effects
      lp <- cat_logp(XB[rows, , drop = FALSE] + Zg %*% B)
      P <- exp(lp[, -1, drop = FALSE])
      gl <- as.vector(t(Zg) %*% (Yg - P))
      Hl <- matrix(0, q, q)
      for (i in seq_along(rows)) {
        pi_ <- P[i, ]
        Hl <- Hl + kronecker(diag(pi_, Km1) - tcrossprod(pi_), tcrossprod(Zg[i, ]))
      }
      ll <- sum(lp[cbind(seq_along(rows), y[rows] + 1L)])
      if (is.null(L)) list(h = ll + mvn_logdens(b, Q, ldS), grad = gl - as.vector(Q %*% b), H = Hl + Q, b = b)
      else list(h = ll + sum(dnorm(v, log = TRUE)), grad = as.vector(t(L) %*% gl) - v,
                H = t(L) %*% Hl %*% L + diag(q), b = b)
    }
    v <- rep(0, q); extra <- 0
    for (it in 1:100) {                                  # Newton (h concave); 2 more steps once |step| < 1e-10
      pt <- parts(v); st <- solve(pt$H, pt$grad); v <- v + st
      if (max(abs(st)) < 1e-10) { extra <- extra + 1; if (extra > 2) break }
    }
    pt <- parts(v); modes[, gg] <- v
    total <- total + pt$h + q / 2 * log(2 * pi) - 0.5 * as.numeric(determinant(pt$H)$modulus)
  }
  list(logLik = total, modes = modes)
}

## ---------------------------------------------------------------- multinom check (no random effects)

multinom_check <- function() {
  Z1 <- matrix(1, nrow(dat), 1)
  data <- list(y = yi, X = X, Z = Z1, g = gi, shared = 0L, use_re = 0L, spherical = 0L)
  pars <- list(beta = matrix(0, ncol(X), 2), theta = rep(0, 2), rho = numeric(0), b = matrix(0, 2, NG))
  obj <- TMB::MakeADFun(data = data, parameters = pars, DLL = "categorical_glmm", silent = TRUE,
                        map = list(theta = factor(rep(NA, 2)), b = factor(rep(NA, 2 * NG))))
  opt <- nlminb(obj$par, obj$fn, obj$gr, control = list(rel.tol = 1e-14, iter.max = 1e4, eval.max = 1e4))
  nw <- newton_tmb(obj, opt$par)
  tmb_beta <- matrix(nw$p, ncol(X), 2)                       # columns car, train
  direct <- sum(cat_logp(X %*% tmb_beta)[cbind(seq_along(yi), yi + 1L)])
  m_tight <- multinom(choice ~ x, data = dat, trace = FALSE, maxit = 10000, abstol = 1e-300, reltol = 1e-15)
  m_def <- multinom(choice ~ x, data = dat, trace = FALSE)
  cf <- coef(m_tight)                                        # rows car, train; columns (Intercept), x
  cf_def <- coef(m_def)
  mn_vec <- as.vector(t(cf))                                 # car (Int, x), train (Int, x)
  list(
    note = paste("without random effects: nnet::multinom(choice ~ x, data, maxit = 10000, abstol = 1e-300, reltol =",
                 "1e-15) (tightened BFGS; multinom_default = multinom's default tolerances) against the template with",
                 "use_re = 0 (theta, b mapped to NA: the plain multinomial logit likelihood), nlminb + Newton to",
                 "max |gradient| < 1e-8; direct_logLik = the multinomial log-likelihood written in R at the",
                 "template's estimates. Coefficients ordered car (Intercept, x), train (Intercept, x)."),
    multinom_logLik = as.numeric(logLik(m_tight)), multinom_estimate = arr(mn_vec),
    multinom_default_logLik = as.numeric(logLik(m_def)), multinom_default_estimate = arr(as.vector(t(cf_def))),
    tmb_logLik = -nw$f, tmb_max_abs_gradient = max(abs(nw$g)), tmb_estimate = arr(nw$p),
    direct_logLik = direct,
    logLik_difference = -nw$f - as.numeric(logLik(m_tight)),
    max_abs_diff_estimates = max(abs(nw$p - mn_vec)),
    default_logLik_difference = -nw$f - as.numeric(logLik(m_def)),
    default_max_abs_diff_estimates = max(abs(nw$p - as.vector(t(cf_def)))),
    direct_minus_tmb_logLik = direct - (-nw$f))
}

## ---------------------------------------------------------------- one case

## One Laplace fit of the template: nlminb from a fixed start, Newton polish, sdreport, and the two checks.
fit_tmb <- function(Z, shared, spherical) {
  r <- ncol(Z); Km1 <- length(LEVELS) - 1L; q <- r * Km1
  m <- if (shared) q else r
  n_rho <- (if (shared) 1 else Km1) * m * (m - 1) / 2
  data <- list(y = yi, X = X, Z = Z, g = gi, shared = as.integer(shared), use_re = 1L, spherical = as.integer(spherical))
  pars <- list(beta = matrix(0, ncol(X), Km1), theta = rep(if (spherical) 0.5 else 0, q), rho = rep(0, n_rho),
               b = matrix(0, q, NG))
  t0 <- proc.time()[["elapsed"]]
  obj <- TMB::MakeADFun(data = data, parameters = pars, random = "b", DLL = "categorical_glmm", silent = TRUE,
                        inner.control = list(tol = INNER_TOL))
  capO <- capture(nlminb(obj$par, obj$fn, obj$gr, control = list(rel.tol = 1e-14, iter.max = 1e4, eval.max = 1e4)))
  opt <- capO$value
  ## log-SD / correlation parameterisation: a correlation parameter beyond +-50 (|corr| > 0.9998) or a log SD
  ## below -20 means nlminb is heading for the boundary (singular Sigma), where no finite optimum exists:
  ## no Newton polish then (it would only crawl on, slowly: the inner problems are ill-conditioned there)
  diverged <- !spherical && (any(abs(opt$par[names(opt$par) == "rho"]) > 50) || any(opt$par[names(opt$par) == "theta"] < -20))
  nw <- if (diverged) list(p = opt$par, f = opt$objective, g = as.vector(obj$gr(opt$par)), steps = 0,
                           status = "diverged toward the boundary (not polished)")
        else newton_tmb(obj, opt$par)
  p <- nw$p
  capS <- capture(TMB::sdreport(obj, par.fixed = p)); sdr <- capS$value
  elapsed <- proc.time()[["elapsed"]] - t0
  se <- suppressWarnings(sqrt(diag(sdr$cov.fixed)))
  ib <- which(names(p) == "beta"); ith <- which(names(p) == "theta"); irh <- which(names(p) == "rho")
  rep_ <- summary(sdr, "report")
  sd_se <- rep_[rownames(rep_) == "sd", "Std. Error"]; cor_se <- rep_[rownames(rep_) == "cor", "Std. Error"]
  beta <- matrix(p[ib], ncol(X), Km1); beta_se <- matrix(se[ib], ncol(X), Km1)
  S <- Sigma_from(p[ith], p[irh], r, Km1, shared, spherical)

  ## parameterisation check: the template's joint -log density at the conditional modes vs R's sum
  obj$fn(p)
  full <- obj$env$last.par
  rp <- obj$report(full)
  stopifnot(max(abs(S$sd - rep_[rownames(rep_) == "sd", "Estimate"])) < 1e-12,
            max(abs(S$Sigma - rp$Sigma)) < 1e-12)
  vhat <- matrix(full[obj$env$random], q, NG)             # b^ (u^ if spherical)
  bhat <- if (spherical) S$L %*% vhat else vhat
  jnll_tmb <- obj$env$f(full)
  eta <- X %*% beta + t(vapply(seq_len(nrow(dat)), function(i)
    as.vector(Z[i, ] %*% matrix(bhat[, gi[i] + 1L], r, Km1)), numeric(Km1)))
  prior <- if (spherical) sum(dnorm(vhat, log = TRUE)) else tryCatch({   # fails for a diverged (singular) fit
    Q <- solve(S$Sigma); ldS <- as.numeric(determinant(S$Sigma)$modulus)
    sum(vapply(seq_len(NG), function(j) mvn_logdens(bhat[, j], Q, ldS), 0))
  }, error = function(e) NA_real_)
  hand <- sum(cat_logp(eta)[cbind(seq_along(yi), yi + 1L)]) + prior

  ## Laplace check in plain R
  lap <- tryCatch(laplace_by_hand(yi, X, Z, gi, beta, S$Sigma, if (spherical) S$L else NULL),
                  error = function(e) list(logLik = NA_real_, modes = NA_real_))

  list(obj = obj, opt = opt, nw = nw, p = p, se = se, sdr = sdr, capO = capO, capS = capS, elapsed = elapsed,
       beta = beta, beta_se = beta_se, S = S, sd_se = sd_se, cor_se = cor_se, cor = rp$Corr, q = q, r = r,
       Km1 = Km1, m = m, n_rho = n_rho, logLik = -as.numeric(nw$f), max_abs_gradient = max(abs(nw$g)),
       ok = nw$status == "converged" && isTRUE(sdr$pdHess),
       jnll_tmb = jnll_tmb, hand = hand, lap = lap, vhat = vhat)
}

## the free correlations (lower triangles of the blocks, row-wise: rho's order) of a fit
free_cor <- function(f) {
  nblk <- if (f$m == f$q) 1 else f$Km1
  unlist(lapply(seq_len(nblk), function(c) {
    C <- f$S$Corr[(c - 1) * f$m + seq_len(f$m), (c - 1) * f$m + seq_len(f$m), drop = FALSE]
    unlist(lapply(seq_len(f$m), function(i) C[i, seq_len(i - 1)]))
  }))
}
fit_summary <- function(f, what) list(
  parameterisation = what, logLik = f$logLik, max_abs_gradient = f$max_abs_gradient, status = f$nw$status,
  pdHess = f$sdr$pdHess, nlminb_convergence = f$opt$convergence, nlminb_message = f$opt$message,
  nlminb_logLik = -f$opt$objective, polish_steps = f$nw$steps,
  parameters = list(names = arr(names(f$p)), estimate = arr(f$p), se = arr(f$se)),
  fixef = arr(f$beta), sd = arr(f$S$sd), cor = arr(free_cor(f)))

categorical_case <- function(id, formula, re, shared) {
  Z <- model.matrix(as.formula(paste("~", re)), dat)
  colnames(Z) <- sub("(Intercept)", "Intercept", colnames(Z), fixed = TRUE)
  main <- fit_tmb(Z, shared, spherical = FALSE)
  sph <- fit_tmb(Z, shared, spherical = TRUE)
  ## the reference: the log-SD / correlation fit; where it does not converge (the optimum on the boundary,
  ## a singular Sigma: an SD at 0 or a correlation at +-1, reached only as parameters diverge), the spherical
  ## (Cholesky) fit, which reaches the boundary at finite parameters
  singular <- !main$ok
  if (singular && !sph$ok) stop(id, ": neither parameterisation converged")
  ref <- if (singular) sph else main
  other <- if (singular) main else sph
  r <- ref$r; Km1 <- ref$Km1; q <- ref$q; n_rho <- ref$n_rho
  beta <- ref$beta; beta_se <- ref$beta_se; S <- ref$S

  fixef <- setNames(lapply(seq_len(Km1), function(c)
    list(names = arr(colnames(X)), estimate = arr(beta[, c]), se = arr(beta_se[, c]))), CATS)
  if (shared) {
    terms <- as.vector(outer(colnames(Z), CATS, function(t, c) paste0(c, "_", t)))
    re_out <- list(shared = list(terms = arr(terms), sd = arr(S$sd), corr = mat_rows(S$Corr)))
    re_sd_se <- list(shared = arr(ref$sd_se))
    re_cor_se <- list(shared = arr(ref$cor_se))
    cov_words <- "shared: one unstructured covariance over both categories' terms (brms's (1 | p | g))"
  } else {
    npb <- r * (r - 1) / 2
    re_out <- setNames(lapply(seq_len(Km1), function(c) {
      ix <- (c - 1) * r + seq_len(r)
      list(terms = arr(colnames(Z)), sd = arr(S$sd[ix]), corr = mat_rows(S$Corr[ix, ix, drop = FALSE]))
    }), CATS)
    re_sd_se <- setNames(lapply(seq_len(Km1), function(c) arr(ref$sd_se[(c - 1) * r + seq_len(r)])), CATS)
    re_cor_se <- setNames(lapply(seq_len(Km1), function(c) arr(ref$cor_se[(c - 1) * npb + seq_len(npb)])), CATS)
    cov_words <- "independent per category: each category its own unstructured covariance (brms's default)"
  }

  r_call <- paste0("X <- model.matrix(~ x, dat); Z <- model.matrix(~ ", re, ", dat); ",
    "obj <- TMB::MakeADFun(data = list(y = as.integer(dat$choice) - 1L (levels bus, car, train), X = X, Z = Z, ",
    "g = as.integer(dat$g) - 1L, shared = ", as.integer(shared), "L, use_re = 1L, spherical = ", as.integer(singular),
    "L), parameters = list(beta = matrix(0, 2, 2), theta = rep(", if (singular) "0.5" else "0", ", ", q,
    "), rho = rep(0, ", n_rho, "), b = matrix(0, ", q, ", 40)), random = \"b\", DLL = \"categorical_glmm\", inner.control = list(tol = ", INNER_TOL, ")); ",
    "opt <- nlminb(obj$par, obj$fn, obj$gr, control = list(rel.tol = 1e-14, iter.max = 1e4, eval.max = 1e4)); ",
    "then Newton steps (obj$gr, optimHess(p, obj$fn, obj$gr), step halving) until max |gradient| < ", GTOL,
    "; TMB::sdreport(obj, par.fixed = p)")
  par_words <- if (singular)
    paste("spherical (lme4-style): b_g = L u_g, u_g ~ N(0, I), L lower triangular (block diagonal per category",
          "unless shared), theta = diag(L) (any sign), rho = L below the diagonal (row-wise); Sigma = L L'")
  else paste("theta = log SDs (category-major), rho = unconstrained correlation parameters (TMB's UNSTRUCTURED_CORR;",
             "2 x 2: corr = rho / sqrt(1 + rho^2)); b_g ~ N(0, Sigma)")
  out <- list(
    case_id = id, dataset = "simulated", data_file = "categorical_sim.csv", data_note = DATA_NOTE,
    formula = formula, family = "categorical", link = "logit", nAGQ = 1L, reference_level = "bus",
    categories = arr(LEVELS),
    r_call = r_call,
    engine = paste("TMB template tests/data/r/categorical_glmm.cpp (TMB::MakeADFun, random = \"b\", Laplace) +",
                   "nlminb + Newton polish", if (singular) "(spherical = 1: the optimum is on the boundary)" else NULL),
    versions = versions,
    logLik = ref$logLik, max_abs_gradient = ref$max_abs_gradient,
    fixef = fixef,
    re = re_out,
    re_sd_se = re_sd_se,
    re_cor_se = re_cor_se,
    covariance = cov_words,
    singular = singular,
    parameters = list(
      names = arr(names(ref$p)), estimate = arr(ref$p), se = arr(ref$se),
      note = paste("the template's outer parameters: beta (p x 2, column-major: car (Intercept, x), train",
                   "(Intercept, x)), then", par_words)),
    note = paste0("categorical (multinomial logit), reference bus: eta_bus = 0, eta_c = X beta_c + Z b_{c,g} ",
                  "(c = car, train), per group b_g = (b_car; b_train) ~ N(0, Sigma); ", cov_words, ". Fitted with the ",
                  "TMB template tests/data/r/categorical_glmm.cpp (the exact joint negative log density, so -fn at ",
                  "the optimum is the Laplace logLik); parameterisation: ", par_words, ". max_abs_gradient: of -fn ",
                  "in (beta, theta, rho) (TMB's exact gradient). se: TMB::sdreport at the polished parameters ",
                  "(inverse Hessian of the Laplace objective); re_sd_se / re_cor_se: the SDs' / free correlations' ",
                  "(block lower triangles, row-wise) SEs by the delta method (ADREPORT). corr: the full correlation ",
                  "matrix of the terms.",
                  if (singular) paste0(" SINGULAR FIT: the maximum is on the boundary of the covariance space ",
                    "(correlations at +-1 / an SD at 0: Sigma singular); in the log-SD / correlation parameterisation ",
                    "it is reached only as rho diverges (logsd_fit: nlminb's last point, not converged), so the ",
                    "reference is the spherical (Cholesky) fit, where the boundary is an interior point (gradient ",
                    "~0, pdHess in those parameters). Correlations at +-1 carry no information in their SEs.")
                  else ""),
    nlminb = list(logLik = -ref$opt$objective, convergence = ref$opt$convergence, message = ref$opt$message,
                  iterations = ref$opt$iterations, warnings = arr(ref$capO$warnings)),
    polish = list(status = ref$nw$status, steps = ref$nw$steps, logLik_gain = ref$logLik + ref$opt$objective,
                  max_abs_par_change = max(abs(ref$p - ref$opt$par))),
    status = ref$nw$status,
    pdHess = ref$sdr$pdHess, sdreport_warnings = arr(ref$capS$warnings),
    parameterisation_check = list(
      note = paste("at the polished parameters and the conditional modes: the template's joint negative log",
                   "density obj$env$f(obj$env$last.par) against -[sum log P(y | b^) + sum log N(b^_g; 0, Sigma)]",
                   if (singular) "(spherical: sum log N(u^; 0, I), b^ = L u^)" else NULL,
                   "computed in R"),
      tmb_jnll = ref$jnll_tmb, hand_jnll = -ref$hand, difference = ref$jnll_tmb + ref$hand),
    laplace_check = list(
      note = paste("the Laplace logLik recomputed in plain R (no TMB) at the reference estimates: per group the",
                   "mode of h(b) = log p(y_g | b) + log N(b; 0, Sigma) by Newton with the analytic gradient",
                   "sum_i z_i (e_{y_i} - p_i) - Sigma^-1 b and -Hessian sum_i (diag(p_i) - p_i p_i') (x) z_i z_i' +",
                   "Sigma^-1 (non-reference categories), then sum_g [h(b^) + q log(2 pi) / 2 - log det(-h'') / 2]",
                   if (singular) "(spherical: the same in u, b = L u, u ~ N(0, I), -Hessian L' (sum ...) L + I)" else NULL),
      logLik = ref$lap$logLik, difference = ref$lap$logLik - ref$logLik,
      max_abs_diff_modes = max(abs(ref$lap$modes - ref$vhat))),
    fit_time = ref$elapsed)
  if (singular) {
    out$logsd_fit <- c(fit_summary(main, "log SDs + UNSTRUCTURED_CORR (spherical = 0), from zeros"),
      list(note = paste("the log-SD / correlation parameterisation does not converge: the correlation parameters",
                        "diverge toward the boundary (logLik / gradient at nlminb's last point may be non-finite); nlminb_logLik",
                        "is below the reference (the supremum)")),
      nlminb_logLik_minus_reference = -main$opt$objective - ref$logLik)
  } else {
    out$spherical_check <- c(fit_summary(sph, "spherical (spherical = 1, lme4-style Cholesky), from theta = 0.5"),
      list(note = paste("the same model fitted in the template's spherical parameterisation (b = L u, u ~ N(0, I)):",
                        "the Laplace approximation is invariant under this linear change of the random effects, so",
                        "the optimum must agree")),
      logLik_minus_reference = sph$logLik - ref$logLik,
      max_abs_diff_fixef = max(abs(sph$beta - ref$beta)), max_abs_diff_sd = max(abs(sph$S$sd - ref$S$sd)),
      max_abs_diff_corr = max(abs(sph$S$Corr - ref$S$Corr)))
  }
  out
}

## ---------------------------------------------------------------- cases

summary_rows <- list()
report <- function(out) {
  write_case(out)
  summary_rows[[length(summary_rows) + 1]] <<- out
  cat(sprintf("%-24s logLik %.10f  max|grad| %.1e  (%s, pdHess %s%s)\n", out$case_id, out$logLik,
              out$max_abs_gradient, out$status, out$pdHess, if (isTRUE(out$singular)) ", SINGULAR" else ""))
}

out <- categorical_case("categorical_sim", "choice ~ x + (1 | g)", "1", shared = FALSE)
out$multinom_check <- multinom_check()
report(out)
report(categorical_case("categorical_sim_slope", "choice ~ x + (x | g)", "x", shared = FALSE))
report(categorical_case("categorical_sim_shared", "choice ~ x + (1 | p | g)", "1", shared = TRUE))

cat("\nestimates:\n")
for (o in summary_rows) {
  cat(sprintf("%-24s fixef car %s | train %s\n", o$case_id,
              paste(sprintf("%.6f", o$fixef$mucar$estimate), collapse = " "),
              paste(sprintf("%.6f", o$fixef$mutrain$estimate), collapse = " ")))
  for (nm in names(o$re)) {
    C <- do.call(rbind, lapply(o$re[[nm]]$corr, as.vector))
    cat(sprintf("%-24s   re %-8s sd %s  corr %s\n", "", nm, paste(sprintf("%.6f", o$re[[nm]]$sd), collapse = " "),
                paste(sprintf("%.6f", C[lower.tri(C)]), collapse = " ")))
  }
}
cat("\nchecks:\n")
for (o in summary_rows) {
  cat(sprintf("%-24s fit time %.1f s\n", o$case_id, o$fit_time))
  cat(sprintf("%-24s parameterisation check diff %.1e; laplace_check diff %.1e (modes %.1e)\n", o$case_id,
              o$parameterisation_check$difference, o$laplace_check$difference, o$laplace_check$max_abs_diff_modes))
  if (!is.null(o$multinom_check))
    cat(sprintf("%-24s multinom check: logLik diff %.1e, estimates diff %.1e (default tolerances: %.1e, %.1e); direct - tmb %.1e\n",
                o$case_id, o$multinom_check$logLik_difference, o$multinom_check$max_abs_diff_estimates,
                o$multinom_check$default_logLik_difference, o$multinom_check$default_max_abs_diff_estimates,
                o$multinom_check$direct_minus_tmb_logLik))
  if (!is.null(o$spherical_check))
    cat(sprintf("%-24s spherical parameterisation: logLik diff %.1e, fixef %.1e, sd %.1e, corr %.1e\n", o$case_id,
                o$spherical_check$logLik_minus_reference, o$spherical_check$max_abs_diff_fixef,
                o$spherical_check$max_abs_diff_sd, o$spherical_check$max_abs_diff_corr))
  if (isTRUE(o$singular))
    cat(sprintf("%-24s SINGULAR: reference from the spherical fit; log-SD fit (%s, nlminb: %s) nlminb logLik - reference %.1e\n",
                o$case_id, o$logsd_fit$status, o$logsd_fit$nlminb_message, o$logsd_fit$nlminb_logLik_minus_reference))
  w <- c(o$nlminb$warnings, o$sdreport_warnings)
  if (length(w)) cat(sprintf("%-24s warnings: %s\n", o$case_id, paste(w, collapse = " | ")))
}
cat(sprintf("\ntotal run time %.1f s\n", proc.time()[["elapsed"]] - t_start))
