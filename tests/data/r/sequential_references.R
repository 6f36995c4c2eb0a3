## Reference fits of the sequential ordinal mixed models (issue 22): brms's sratio (stopping ratio) and
## acat (adjacent category) families with random effects, Laplace (and one AGQ) marginal likelihood.
##
## Run from the repository root:   Rscript tests/data/r/sequential_references.R      (about 40 s on 2 cores,
## a third of it compiling the TMB template)
## Reads tests/data/wine.csv (written by ordinal_references.R), tests/data/sratio_sim.csv and
## tests/data/acat_sim.csv (simulated data sets: y 1..5, x numeric, g group id 0..39; 600 rows, 15 per group;
## supplied as they are, not simulated here); writes one tests/data/<case_id>.json per case (same layout as
## wine_clmm_logit.json) and prints a summary table.
##
## Models (K categories, y in 1..K, free thresholds tau_1..tau_{K-1}, eta = X beta + Z b WITHOUT an intercept
## in X, b ~ N(0, Sigma); F the inverse link: plogis, pnorm, or F(x) = 1 - exp(-exp(x)) for cloglog):
##  - sratio: P(y = k | y >= k) = F(tau_k - eta), k < K. This IS a binary GLMM on the continuation-ratio
##    expansion: an observation with y = k becomes the rows j = 1..min(k, K - 1) with outcome stop = (j == k),
##    same group, covariates copied. A binomial(link) GLMM stop ~ 0 + j + <covariates> + (<re> | g) then has
##    coefficients j1..j(K-1) = tau and <covariates> = -beta (stop is modelled as F(tau_j - eta), so the
##    covariate coefficients are -beta and the random effects -b: SDs and correlations are unchanged), and its
##    log-likelihood IS the sratio model's (Laplace and AGQ alike: the expansion keeps each group's rows
##    together, and Bernoulli rows have no binomial coefficients, so lme4's nAGQ > 1 logLik is complete).
##    Every case is fitted twice on the expansion, each fit Newton-polished to max |gradient| < 1e-8:
##     * glmer(..., control = glmerControl(optimizer = "bobyqa", tolPwrss = 1e-10, optCtrl = list(maxfun =
##       1e5))), polished on glmer's own deviance function (devFunOnly = TRUE, parameters c(theta, fixef)) with
##       a Richardson central-difference gradient (absolute steps 1e-3, 5e-4) and central differences of it as
##       the Hessian; se = sqrt(diag(solve(Hessian)))[fixef] (the full Hessian, as clmm's and lme4's
##       use.hessian; the fixef block of the inverse does not depend on how theta is parameterised);
##     * glmmTMB(...) (nAGQ = 1 only), polished on its exact TMB gradient; se from TMB::sdreport.
##    The REFERENCE (top-level logLik / thresholds / beta / re_sd) is glmmTMB's for nAGQ = 1 and glmer's for
##    nAGQ = 10: for a non-canonical link (probit, cloglog) glmer's "Laplace" uses its PIRLS (expected, Fisher)
##    weights in the log-determinant, not the observed information of the Laplace approximation proper that
##    glmmTMB, clmm and bayesmix.exact use (logLik 0.035 / 0.09 apart on wine); for logit they agree to ~1e-9.
##    `laplace_check`: the reference logLik recomputed in R from the sratio definition on the original data
##    (no expansion, no lme4 / TMB), Laplace (observed information) or AGQ by hand at the reference estimates.
##  - acat (logit): P(y = k) proportional to exp(s_k), s_1 = 0, s_k = sum_{j<k} (eta - tau_j). No lme4 /
##    glmmTMB / ordinal equivalent: TMB template tests/data/r/acat_glmm.cpp (scalar random intercept,
##    sd = exp(theta)), compiled by this script (-O0: the fits are tiny, the compile is most of the run time)
##    into tempdir() (or $SEQUENTIAL_TMPL_DIR, reused if up to date); nlminb (rel.tol 1e-14, iter.max 1e4)
##    from zeros, then Newton steps (TMB gradient obj$gr, optimHess Hessian) to max |gradient| < 1e-8; se from
##    TMB::sdreport (the sd's by the delta method, ADREPORT). `parameterisation_check`: the template's joint
##    negative log density at the conditional modes against a hand-written R sum; `laplace_check`: the
##    Laplace logLik recomputed in R (per-group Newton for the mode, analytic second derivative).
##  - wine_sratio_logit also carries `expansion_check`: without the random effect, glm on the expansion
##    against a direct maximisation (optim + Newton) of the sratio likelihood written from its definition.
##
## Numbers are written as the shortest decimal that round-trips (15-17 significant digits; jsonlite 1.8.4
## alone stops at 15 even with digits = NA), as in more_family_references.R.
##
## Tested with R 4.2.2, lme4 1.1-31, Matrix 1.5-3, glmmTMB 1.1.5, TMB 1.9.2, jsonlite 1.8.4 (Debian bookworm
## packages); g++ for the template.

suppressPackageStartupMessages({
  library(lme4)
  library(glmmTMB)
  library(TMB)
  library(jsonlite)
})

OUT <- file.path("tests", "data")
RDIR <- file.path(OUT, "r")
stopifnot(dir.exists(OUT), file.exists(file.path(RDIR, "acat_glmm.cpp")),
          file.exists(file.path(OUT, "wine.csv")), file.exists(file.path(OUT, "sratio_sim.csv")),
          file.exists(file.path(OUT, "acat_sim.csv")))

versions <- list(
  R = R.version.string,
  lme4 = as.character(packageVersion("lme4")),
  Matrix = as.character(packageVersion("Matrix")),
  glmmTMB = as.character(packageVersion("glmmTMB")),
  TMB = as.character(packageVersion("TMB")),
  jsonlite = as.character(packageVersion("jsonlite"))
)

GTOL <- 1e-8
K <- 5L
TH_NAMES <- c("1|2", "2|3", "3|4", "4|5")

## ---------------------------------------------------------------- helpers (from more_family_references.R)

capture <- function(expr) {
  w <- character(); msg <- character()
  val <- withCallingHandlers(expr,
    warning = function(c) { w <<- c(w, conditionMessage(c)); invokeRestart("muffleWarning") },
    message = function(c) { msg <<- c(msg, conditionMessage(c)); invokeRestart("muffleMessage") })
  list(value = val, warnings = w, messages = msg)
}
arr <- function(x) { if (is.null(x)) x <- character(0); I(unname(as.vector(x))) }  # always a JSON array

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

## ---------------------------------------------------------------- data

wine <- read.csv(file.path(OUT, "wine.csv"), colClasses = c(temp = "character", contact = "character",
                 bottle = "character", judge = "character"))
wine$temp <- factor(wine$temp, c("cold", "warm"))
wine$contact <- factor(wine$contact, c("no", "yes"))
wine$judge <- factor(wine$judge, as.character(1:9))
stopifnot(nrow(wine) == 72, all(wine$rating %in% 1:5))
WINE_NOTE <- paste("ordinal::wine (72 rows, tests/data/wine.csv from ordinal_references.R): rating 1..5, temp",
                   "(cold, warm), contact (no, yes), judge (1..9); baselines cold and no")
WINE_LEVELS <- list(temp = c("cold", "warm"), contact = c("no", "yes"), judge = as.character(1:9))

read_sim <- function(file) {
  d <- read.csv(file.path(OUT, file))
  stopifnot(nrow(d) == 600, all(d$y %in% 1:5), length(unique(d$g)) == 40)
  d$g <- factor(d$g, sort(unique(d$g)))
  d
}
sratio_sim <- read_sim("sratio_sim.csv")
acat_sim <- read_sim("acat_sim.csv")
SIM_NOTE <- function(file) paste0("simulated data set tests/data/", file, " (600 rows: y 1..5, x numeric, g group id ",
                                  "0..39 with 15 rows each), supplied as is (copied from the issue's simulation), not ",
                                  "simulated by this script")
SIM_LEVELS <- list(g = as.character(0:39))

## ---------------------------------------------------------------- sratio: expansion + glmer

## Continuation-ratio expansion: a row with y = k gives rows j = 1..min(k, K - 1), stop = (j == k).
expand <- function(d, y, K) {
  kk <- d[[y]]
  n_rep <- pmin(kk, K - 1L)
  idx <- rep(seq_len(nrow(d)), n_rep)
  ex <- d[idx, , drop = FALSE]
  ex$j <- unlist(lapply(n_rep, seq_len))
  ex$stop <- as.integer(ex$j == kk[idx])
  ex$j <- factor(ex$j, seq_len(K - 1L))
  rownames(ex) <- NULL
  ex
}
EXPAND_TEXT <- paste(deparse(expand), collapse = "\n")
EXPAND_WORDS <- paste("ex <- expand(dat, \"<response>\", K = 5): each observation with y = k becomes the rows",
                      "j = 1..min(k, K - 1) (j a factor with levels 1..K-1) with binary outcome stop = as.integer(j == k),",
                      "all other columns (covariates, group) copied; the rows of one group stay in that group")

## Central-difference gradient with one Richardson step and ABSOLUTE steps h, h / 2: the deviance function
## carries ~1e-12 of rounding noise, so relative steps on small parameters (as numDeriv's) would leave
## ~1e-6 of noise in the gradient; here it is ~1e-12 / h (truncation error O(h^4)).
grad_rich <- function(f, p, h = 1e-3) {
  vapply(seq_along(p), function(i) {
    e <- replace(numeric(length(p)), i, 1)
    d1 <- (f(p + h * e) - f(p - h * e)) / (2 * h)
    d2 <- (f(p + h / 2 * e) - f(p - h / 2 * e)) / h
    (4 * d2 - d1) / 3
  }, 0)
}
## Hessian: central differences of grad_rich, symmetrised.
hess_rich <- function(f, p, h = 1e-3) {
  H <- vapply(seq_along(p), function(i) {
    e <- replace(numeric(length(p)), i, 1)
    (grad_rich(f, p + h * e) - grad_rich(f, p - h * e)) / (2 * h)
  }, numeric(length(p)))
  (H + t(H)) / 2
}

## Newton steps on f (-logLik) with those numerical derivatives. A step is taken if it lowers f, or, once
## the predicted gain is below f's rounding noise (1e-10), if it lowers max |gradient|.
newton_numeric <- function(f, p0, gtol = GTOL, maxit = 30) {
  p <- p0; fp <- f(p); steps <- 0; status <- "converged"
  g <- grad_rich(f, p)
  for (i in seq_len(maxit)) {
    if (max(abs(g)) < gtol) break
    H <- hess_rich(f, p)
    dl <- tryCatch(solve(H, g), error = function(e) NULL)
    if (is.null(dl)) { status <- "singular Hessian"; break }
    small <- sum(g * dl) / 2 < 1e-10
    lam <- 1; ok <- FALSE
    for (k in 1:30) {
      pn <- p - lam * dl; fn <- f(pn)
      if (is.finite(fn) && fn < fp) { ok <- TRUE; gn <- grad_rich(f, pn); break }
      if (small && is.finite(fn)) {
        gn <- grad_rich(f, pn)
        if (max(abs(gn)) < max(abs(g))) { ok <- TRUE; break }
      }
      lam <- lam / 2
    }
    if (!ok) { status <- "no descent step found (numerical gradient at its noise floor)"; break }
    p <- pn; fp <- fn; g <- gn; steps <- i
    if (i == maxit) status <- "iteration limit"
  }
  if (status == "converged" && max(abs(g)) >= gtol) status <- "not converged"
  list(p = p, f = f(p), g = g, steps = steps, status = status)
}

## Newton steps on a TMB objective (exact gradient obj$gr, optimHess Hessian), as more_family_references.R.
newton_tmb <- function(obj, p0, gtol = GTOL, maxit = 50) {
  p <- p0; fp <- obj$fn(p); steps <- 0; status <- "converged"
  for (i in seq_len(maxit)) {
    g <- as.vector(obj$gr(p))
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
  if (status == "converged" && max(abs(g)) >= gtol) status <- "not converged"
  list(p = p, f = fp, g = g, steps = steps, status = status)
}

## lme4's theta (lower Cholesky factor of Sigma, column-wise; no residual scale for binomial) -> sd, cor
theta_to_sdcor <- function(theta, q) {
  L <- matrix(0, q, q); L[lower.tri(L, diag = TRUE)] <- theta
  S <- L %*% t(L); sd <- sqrt(diag(S))
  list(sd = sd, cor = if (q > 1) (S / outer(sd, sd))[lower.tri(S)] else NULL)
}

## log P(y | eta) for sratio, written from the definition (y in 1..K): log P(y = k) = log F(tau_k - eta)
## [k < K] + sum_{j<k} log(1 - F(tau_j - eta)); each link's log F and log(1 - F) in a stable form.
LOGF <- list(
  logit = function(x) plogis(x, log.p = TRUE), probit = function(x) pnorm(x, log.p = TRUE),
  cloglog = function(x) log(-expm1(-exp(x))))
LOGS <- list(
  logit = function(x) plogis(x, lower.tail = FALSE, log.p = TRUE),
  probit = function(x) pnorm(x, lower.tail = FALSE, log.p = TRUE), cloglog = function(x) -exp(x))
sratio_logp <- function(y, eta, tau, link) {
  x <- outer(-eta, tau, "+")                                  # n x (K-1): tau_j - eta
  logS <- matrix(LOGS[[link]](x), nrow(x))
  cumS <- cbind(0, t(apply(logS, 1, cumsum)))                 # sum_{j<k} log S_j, k = 1..K
  lf <- numeric(length(y)); s <- y < K
  lf[s] <- LOGF[[link]](x[cbind(which(s), y[s])])
  cumS[cbind(seq_along(y), y)] + lf
}

## Hessian of a smooth, noise-free function of a few variables: central second differences with one
## Richardson step (absolute steps 1e-3, 5e-4; truncation O(h^4)).
hess_small <- function(f, p, h = 1e-3) {
  one <- function(h) {
    n <- length(p); H <- matrix(0, n, n); f0 <- f(p)
    for (i in 1:n) for (j in i:n) {
      ei <- replace(numeric(n), i, h); ej <- replace(numeric(n), j, h)
      H[i, j] <- H[j, i] <- if (i == j) (f(p + ei) - 2 * f0 + f(p - ei)) / h^2
                            else (f(p + ei + ej) - f(p + ei - ej) - f(p - ei + ej) + f(p - ei - ej)) / (4 * h^2)
    }
    H
  }
  (4 * one(h / 2) - one(h)) / 3
}

## Gauss-Hermite rule for weight exp(-x^2) (Golub-Welsch)
gauss_hermite <- function(n) {
  J <- matrix(0, n, n); off <- sqrt(seq_len(n - 1) / 2)
  J[cbind(1:(n - 1), 2:n)] <- off; J[cbind(2:n, 1:(n - 1))] <- off
  e <- eigen(J, symmetric = TRUE)
  list(x = e$values, w = sqrt(pi) * e$vectors[1, ]^2)
}

## The Laplace (nAGQ = 1) or adaptive Gauss-Hermite (scalar b, nAGQ > 1) log-likelihood of the sratio model,
## written in R from the definition on the ORIGINAL (not expanded) data, with no lme4 / TMB: per group the
## mode b^ of h(b) = sum log P(y | X beta + z'b) + log N(b; 0, Sigma) by Newton on Richardson central
## differences (grad_rich, hess_small: the observed information), then log L = sum_g [h(b^) + q log(2 pi) / 2 - log det(-h''(b^)) / 2]
## (Laplace) or sum_g log[sum_k w_k sqrt(2) s exp(h(b^ + sqrt(2) s x_k) + x_k^2)], s = (-h'')^(-1/2) (AGQ).
sratio_marginal_by_hand <- function(dat, X, Z, group, tau, beta, Sigma, link, nAGQ = 1) {
  eta0 <- as.vector(X %*% beta); gi <- as.integer(dat[[group]]); q <- ncol(Z)
  Si <- solve(Sigma); ldS <- as.numeric(determinant(Sigma)$modulus)
  total <- 0; modes <- matrix(0, nlevels(dat[[group]]), q)
  gh <- if (nAGQ > 1) gauss_hermite(nAGQ) else NULL
  for (gg in seq_len(nlevels(dat[[group]]))) {
    r <- which(gi == gg); Zg <- Z[r, , drop = FALSE]
    h <- function(b) sum(sratio_logp(dat$y[r], eta0[r] + as.vector(Zg %*% b), tau, link)) -
      0.5 * (q * log(2 * pi) + ldS + sum(b * (Si %*% b)))
    b <- rep(0, q)
    for (it in 1:100) {
      st <- solve(-hess_small(h, b), grad_rich(h, b)); b <- b + st
      if (max(abs(st)) < 1e-12) break
    }
    Hn <- -hess_small(h, b); modes[gg, ] <- b
    if (nAGQ == 1) {
      total <- total + h(b) + q / 2 * log(2 * pi) - 0.5 * as.numeric(determinant(Hn)$modulus)
    } else {
      stopifnot(q == 1)
      s <- 1 / sqrt(Hn[1, 1])
      v <- vapply(seq_len(nAGQ), function(k) h(b + sqrt(2) * s * gh$x[k]) + gh$x[k]^2, 0)
      mx <- max(v)
      total <- total + mx + log(sum(gh$w * sqrt(2) * s * exp(v - mx)))
    }
  }
  list(logLik = total, modes = modes)
}

## glmer's approximation by hand (scalar random intercept): on the expansion, at glmer's polished estimates,
## the modes b^ of h(b) (the true modes: PIRLS's fixed point) but the log-determinant from the Fisher weights
## W = mu.eta(eta)^2 / (mu (1 - mu)): sum_g [h(b^) + log(2 pi) / 2 - log(sum W + 1 / sd^2) / 2].
fisher_laplace_by_hand <- function(ex, covariates, group, tau, beta, sd, link) {
  fam <- binomial(link)
  Xe <- model.matrix(as.formula(paste("~", paste(covariates, collapse = " + "))), ex)[, -1, drop = FALSE]
  lin0 <- tau[as.integer(ex$j)] - as.vector(Xe %*% beta)        # glmer's linear predictor without b (= -b_sratio)
  tot <- 0
  for (gg in levels(ex[[group]])) {
    r <- which(ex[[group]] == gg)
    h <- function(b) sum(dbinom(ex$stop[r], 1, fam$linkinv(lin0[r] + b), log = TRUE)) + dnorm(b, 0, sd, log = TRUE)
    b <- 0
    for (it in 1:100) { st <- -grad_rich(h, b) / hess_small(h, b)[1, 1]; b <- b + st; if (abs(st) < 1e-12) break }
    eta <- lin0[r] + b; mu <- fam$linkinv(eta)
    tot <- tot + h(b) + 0.5 * log(2 * pi) - 0.5 * log(sum(fam$mu.eta(eta)^2 / (mu * (1 - mu))) + 1 / sd^2)
  }
  tot
}

LME4_LAPLACE_NOTE <- paste(
  "lme4's Laplace for a NON-canonical link (probit, cloglog) is another approximation: its PIRLS weights are the",
  "expected (Fisher) information, and glmer's log-determinant uses them, while the Laplace approximation proper",
  "(glmmTMB, clmm, bayesmix.exact, laplace_check here) uses the observed information -d2 log p / d eta2 at the",
  "modes; the two agree for the logit link only. So the reference for nAGQ = 1 is glmmTMB's fit (exact TMB",
  "gradient), and the `glmer` block (same model, same polish) shows how far lme4's approximation is.")

sratio_case <- function(id, dat, dataset, data_file, data_note, factor_levels, formula, covariates, re,
                        group, link = "logit", nAGQ = 1) {
  ex <- expand(dat, "y", K)
  q <- if (re == "1") 1L else 2L
  tj <- paste0("j", 1:(K - 1))
  gform <- sprintf("stop ~ 0 + j + %s + (%s | %s)", paste(covariates, collapse = " + "), re, group)
  t0 <- proc.time()[["elapsed"]]

  ## lme4::glmer on the expansion, Newton-polished on its own deviance function
  ctl <- "glmerControl(optimizer = \"bobyqa\", tolPwrss = 1e-10, optCtrl = list(maxfun = 1e5))"
  call <- sprintf("glmer(%s, data = ex, family = binomial(link = \"%s\"), nAGQ = %d, control = %s)",
                  gform, link, nAGQ, ctl)
  capM <- capture(eval(parse(text = call))); m <- capM$value
  devf <- eval(parse(text = sub(")$", ", devFunOnly = TRUE)", call)))
  nth <- length(getME(m, "theta")); fe_names <- names(fixef(m))
  cov_names <- setdiff(fe_names, tj)
  p0 <- c(getME(m, "theta"), fixef(m))
  f <- function(p) devf(p) / 2                       # -logLik (lme4's deviance function / 2)
  stopifnot(abs(f(p0) + as.numeric(logLik(m))) < 1e-8)
  nw <- newton_numeric(f, unname(p0))
  p <- nw$p; names(p) <- names(p0)
  V <- solve(hess_rich(f, unname(p))); se_all <- sqrt(diag(V)); names(se_all) <- names(p0)
  fe <- p[fe_names]; fe_se <- se_all[fe_names]
  sdc <- theta_to_sdcor(p[seq_len(nth)], q)
  se_lme4 <- sqrt(diag(as.matrix(vcov(m))))
  glmer_block <- list(
    r_call = paste0(EXPAND_WORDS, "; m <- ", call, "; then Newton steps on glmer(..., devFunOnly = TRUE) ",
                    "(the same call; -logLik = devfun(c(theta, fixef)) / 2) from c(getME(m, \"theta\"), fixef(m)), ",
                    "gradient by central differences with one Richardson step (absolute steps 1e-3, 5e-4), Hessian ",
                    "by central differences (1e-3) of that gradient, until max |gradient| < ", GTOL,
                    "; se = sqrt(diag(solve(Hessian of -logLik in c(theta, fixef))))[fixef]"),
    logLik = -nw$f, max_abs_gradient = max(abs(nw$g)), polish_status = nw$status, polish_steps = nw$steps,
    thresholds = list(estimate = arr(fe[tj]), se = arr(fe_se[tj])),
    beta = list(names = arr(cov_names), estimate = arr(-fe[cov_names]), se = arr(fe_se[cov_names])),
    re_sd = arr(sdc$sd), re_cor = if (q > 1) arr(sdc$cor) else NULL, theta = arr(p[seq_len(nth)]),
    unpolished = list(logLik = as.numeric(logLik(m)), max_abs_par_change_by_polish = max(abs(p - p0)),
                      lme4_derivs_max_abs_gradient_deviance = max(abs(m@optinfo$derivs$gradient)),
                      se_vcov = arr(se_lme4[fe_names]), is_singular = isSingular(m), warnings = arr(capM$warnings),
                      conv_messages = arr(unlist(m@optinfo$conv$lme4$messages))),
    note = paste("glmer's fixef are c(thresholds, -beta); shown here in the sratio convention. max_abs_gradient:",
                 "of logLik in lme4's (theta, fixef), numerical. unpolished: the bobyqa fit itself (se_vcov: sqrt(diag(vcov(m))) in fixef order, glmer's signs)."))
  eng <- list(glmer = list(tau = fe[tj], beta = -fe[cov_names], tau_se = fe_se[tj], beta_se = fe_se[cov_names],
                           sd = sdc$sd, cor = sdc$cor, logLik = -nw$f, grad = max(abs(nw$g)), status = nw$status))

  ## glmmTMB on the expansion (the Laplace approximation proper: observed information), Newton-polished
  tmb_block <- NULL
  if (nAGQ == 1) {
    tcall <- sprintf("glmmTMB(%s, data = ex, family = binomial(link = \"%s\"))", gform, link)
    capT <- capture(eval(parse(text = tcall))); mt <- capT$value
    nt <- newton_tmb(mt$obj, mt$fit$par)
    pt <- nt$p; bt <- pt[names(pt) == "beta"]; names(bt) <- names(fixef(mt)$cond)
    mt$obj$fn(pt); rp <- mt$obj$report()
    sd_t <- rp$sd[[1]]; cor_t <- if (q > 1) rp$corr[[1]][2, 1] else NULL
    capS <- capture(TMB::sdreport(mt$obj, par.fixed = pt)); sdr <- capS$value
    se_t <- sqrt(diag(sdr$cov.fixed))[names(pt) == "beta"]; names(se_t) <- names(bt)
    stopifnot(identical(names(bt), fe_names))
    tmb_block <- list(
      r_call = paste0(EXPAND_WORDS, "; mt <- ", tcall, "; then Newton steps on mt$obj (exact TMB gradient ",
                      "mt$obj$gr, optimHess(p, mt$obj$fn, mt$obj$gr), step halving) from mt$fit$par until max ",
                      "|gradient| < ", GTOL, "; se from TMB::sdreport(mt$obj, par.fixed = p); re_sd / re_cor from ",
                      "mt$obj$report() (sd, corr) at p"),
      logLik = -nt$f, max_abs_gradient = max(abs(nt$g)), polish_status = nt$status, polish_steps = nt$steps,
      thresholds = list(estimate = arr(bt[tj]), se = arr(se_t[tj])),
      beta = list(names = arr(cov_names), estimate = arr(-bt[cov_names]), se = arr(se_t[cov_names])),
      re_sd = arr(sd_t), re_cor = if (q > 1) arr(cor_t) else NULL,
      unpolished = list(logLik = -mt$fit$objective, convergence = mt$fit$convergence,
                        max_abs_par_change_by_polish = max(abs(pt - mt$fit$par)), warnings = arr(capT$warnings)),
      pdHess = sdr$pdHess, sdreport_warnings = arr(capS$warnings),
      note = paste("glmmTMB's beta are c(thresholds, -beta); shown here in the sratio convention.",
                   "max_abs_gradient: of -logLik in glmmTMB's (beta, theta), TMB's exact gradient."))
    eng$glmmTMB <- list(tau = bt[tj], beta = -bt[cov_names], tau_se = se_t[tj], beta_se = se_t[cov_names],
                        sd = sd_t, cor = cor_t, logLik = -nt$f, grad = max(abs(nt$g)), status = nt$status)
  }
  prim_name <- if (nAGQ == 1) "glmmTMB" else "glmer"
  pr <- eng[[prim_name]]

  ## the marginal likelihood by hand (original data, definition of sratio) at the reference estimates
  X <- model.matrix(as.formula(paste("~", paste(covariates, collapse = " + "))), dat)[, -1, drop = FALSE]
  Z <- if (q == 1) matrix(1, nrow(dat), 1) else cbind(1, dat[[sub("^1 \\+ ", "", re)]])
  Sigma <- if (q == 1) matrix(pr$sd^2, 1, 1) else diag(pr$sd) %*% matrix(c(1, pr$cor, pr$cor, 1), 2) %*% diag(pr$sd)
  hand <- sratio_marginal_by_hand(dat, X, Z, group, unname(pr$tau), unname(pr$beta), Sigma, link, nAGQ)
  elapsed <- proc.time()[["elapsed"]] - t0

  diffs <- NULL
  if (nAGQ == 1) {
    a <- eng$glmmTMB; b <- eng$glmer
    diffs <- list(
      logLik_glmer_minus_glmmTMB = b$logLik - a$logLik,
      max_abs_diff_thresholds_beta = max(abs(c(b$tau, b$beta) - c(a$tau, a$beta))),
      max_abs_diff_re_sd = max(abs(b$sd - a$sd)),
      max_abs_diff_re_cor = if (q > 1) abs(b$cor - a$cor) else NULL,
      max_abs_diff_se = max(abs(c(b$tau_se, b$beta_se) - c(a$tau_se, a$beta_se))),
      glmer_logLik_by_hand_with_fisher_weights = if (q == 1)
        fisher_laplace_by_hand(ex, covariates, group, unname(b$tau), unname(b$beta), b$sd, link) else NULL,
      note = if (link == "logit") "logit is the canonical link: lme4's Laplace is the Laplace approximation proper, so the two engines agree"
             else LME4_LAPLACE_NOTE)
    if (q == 1) {
      diffs$fisher_weights_minus_glmer <- diffs$glmer_logLik_by_hand_with_fisher_weights - b$logLik
      diffs$fisher_note <- paste("glmer_logLik_by_hand_with_fisher_weights: lme4's approximation recomputed in R on the",
        "expansion at the glmer block's estimates: the true conditional modes b^ (Newton), but log det from the",
        "Fisher weights mu.eta(eta)^2 / (mu (1 - mu)) instead of -d2 log p / d eta2; it reproduces glmer's logLik",
        "(fisher_weights_minus_glmer: ~1e-7 probit, ~3e-6 cloglog, against the 0.035 / 0.09 gap; the rest is lme4's PIRLS",
        "tolerance), so the engines differ by the approximation, not by the model")
    }
  }

  out <- list(
    case_id = id, dataset = dataset, data_file = data_file, data_note = data_note,
    factor_levels = factor_levels,
    formula = formula, family = "sratio", link = link, nAGQ = nAGQ,
    r_call = if (nAGQ == 1) tmb_block$r_call else glmer_block$r_call,
    expansion_code = EXPAND_TEXT,
    engine = if (nAGQ == 1) "glmmTMB (binomial GLMM on the continuation-ratio expansion), Newton-polished; lme4::glmer in `glmer`"
             else "lme4::glmer (nAGQ > 1, binomial GLMM on the continuation-ratio expansion), Newton-polished on its deviance function",
    versions = versions,
    logLik = pr$logLik, max_abs_gradient = pr$grad,
    thresholds = list(names = TH_NAMES, estimate = arr(pr$tau), se = arr(pr$tau_se)),
    beta = list(names = arr(cov_names), estimate = arr(pr$beta), se = arr(pr$beta_se)),
    re_sd = setNames(list(if (q == 1) unname(pr$sd) else arr(pr$sd)), group),
    re_cor = setNames(list(if (q == 1) NULL else arr(pr$cor)), group),
    note = paste0(
      "sratio P(y = k | y >= k) = F(tau_k - eta) fitted as the binary GLMM stop ~ 0 + j + covariates + (re | group) on ",
      "the continuation-ratio expansion (r_call, expansion_code): thresholds = the j1..j4 coefficients, beta = MINUS ",
      "the covariate coefficients (names as R's), and the random effects flip sign with them, so the SDs and the ",
      "correlation are the binary GLMM's; its log-likelihood is the sratio model's (Bernoulli rows: no binomial ",
      "constants; each group's rows stay together, so Laplace and AGQ carry over). Reference engine: ", prim_name,
      if (nAGQ == 1) " (glmer's Laplace uses Fisher weights for non-canonical links; see engine_differences)" else "",
      ". se: sqrt(diag) of the inverse Hessian of -logLik over all outer parameters (thresholds, beta, ",
      "random-effect parameters), as clmm's. laplace_check: the same logLik computed in R from the definition ",
      "(original data, no expansion, no lme4 / TMB) at these estimates."),
    status = pr$status,
    glmer = glmer_block,
    glmmTMB = tmb_block,
    engine_differences = diffs,
    laplace_check = list(
      note = paste("log-likelihood recomputed in R from the sratio definition on the original data at the reference",
                   "estimates: per group, the mode of h(b) = sum log P(y | X beta + z'b) + log N(b; 0, Sigma) by",
                   "Newton (Richardson central differences: gradient and Hessian, the observed information), then",
                   if (nAGQ == 1) "the Laplace approximation sum_g [h(b^) + q log(2 pi) / 2 - log det(-h''(b^)) / 2]"
                   else paste0("adaptive Gauss-Hermite quadrature with ", nAGQ, " nodes (Golub-Welsch rule; scale ",
                               "s = (-h''(b^))^(-1/2), as lme4's nAGQ > 1)")),
      logLik = hand$logLik, difference = hand$logLik - pr$logLik),
    fit_time = elapsed)
  list(out = out, ex = ex)
}

## ---------------------------------------------------------------- acat: TMB template

TMPL_DIR <- Sys.getenv("SEQUENTIAL_TMPL_DIR", file.path(tempdir(), "sequential_templates"))  # outside the repository
dir.create(TMPL_DIR, showWarnings = FALSE, recursive = TRUE)
local({
  src <- file.path(RDIR, "acat_glmm.cpp"); dst <- file.path(TMPL_DIR, "acat_glmm.cpp")
  if (!file.exists(dst) || !identical(readLines(src), readLines(dst))) invisible(file.copy(src, dst, overwrite = TRUE))
  so <- TMB::dynlib(file.path(TMPL_DIR, "acat_glmm"))
  if (!file.exists(so) || file.mtime(so) < file.mtime(dst)) {
    cat("compiling", src, "...\n")
    rc <- capture(TMB::compile(dst, flags = "-O0"))$value
    if (rc != 0) stop("compilation of ", src, " failed")
  }
  dyn.load(so)
})

## log P(y | eta) for acat (logit), written from the definition (y in 1..K), stable log-sum-exp
acat_logp <- function(y, eta, tau) {
  S <- cbind(0, t(apply(outer(eta, tau, "-"), 1, cumsum)))   # n x K: s_1 = 0, s_k = sum_{j<k} (eta - tau_j)
  mx <- apply(S, 1, max)
  S[cbind(seq_along(y), y)] - (mx + log(rowSums(exp(S - mx))))
}

acat_case <- function(id, dat, dataset, data_file, data_note, factor_levels, formula, fixed, group) {
  X <- model.matrix(as.formula(paste("~", fixed)), dat)[, -1, drop = FALSE]
  gi <- as.integer(dat[[group]]) - 1L; ng <- nlevels(dat[[group]])
  data <- list(y = as.integer(dat$y) - 1L, X = X, g = gi)
  pars <- list(beta = rep(0, ncol(X)), tau = rep(0, K - 1), theta = 0, b = rep(0, ng))
  t0 <- proc.time()[["elapsed"]]
  obj <- TMB::MakeADFun(data = data, parameters = pars, random = "b", DLL = "acat_glmm", silent = TRUE)
  capO <- capture(nlminb(obj$par, obj$fn, obj$gr, control = list(rel.tol = 1e-14, iter.max = 1e4, eval.max = 1e4)))
  opt <- capO$value
  nw <- newton_tmb(obj, opt$par)
  p <- nw$p
  capS <- capture(TMB::sdreport(obj, par.fixed = p)); sdr <- capS$value
  elapsed <- proc.time()[["elapsed"]] - t0
  se <- sqrt(diag(sdr$cov.fixed))
  ib <- which(names(p) == "beta"); it <- which(names(p) == "tau"); ith <- which(names(p) == "theta")
  rep_sd <- summary(sdr, "report")

  ## parameterisation check: the template's joint -log density at the conditional modes vs R's sum
  obj$fn(p)
  full <- obj$env$last.par
  bhat <- full[obj$env$random]
  jnll_tmb <- obj$env$f(full)
  sd <- exp(p[ith])
  eta <- as.vector(X %*% p[ib]) + bhat[gi + 1L]
  hand <- sum(acat_logp(dat$y, eta, p[it])) + sum(dnorm(bhat, 0, sd, log = TRUE))

  ## Laplace check in R: per-group mode by Newton, d/db log P = (y - 1) - E[k - 1], d2 = -Var(k)
  eta0 <- as.vector(X %*% p[ib]); tau <- p[it]
  lap <- 0; bmode <- numeric(ng)
  for (gg in seq_len(ng)) {
    rows <- which(gi + 1L == gg); bb <- 0
    moments <- function(bb) {
      e <- eta0[rows] + bb
      S <- cbind(0, t(apply(outer(e, tau, "-"), 1, cumsum)))
      P <- exp(S - apply(S, 1, max)); P <- P / rowSums(P)
      k <- 0:(K - 1); m1 <- as.vector(P %*% k); m2 <- as.vector(P %*% k^2)
      list(g = sum(dat$y[rows] - 1 - m1) - bb / sd^2, h = sum(m2 - m1^2) + 1 / sd^2)
    }
    for (it2 in 1:100) { mo <- moments(bb); st <- mo$g / mo$h; bb <- bb + st; if (abs(st) < 1e-14) break }
    mo <- moments(bb); bmode[gg] <- bb
    lj <- sum(acat_logp(dat$y[rows], eta0[rows] + bb, tau)) + dnorm(bb, 0, sd, log = TRUE)
    lap <- lap + lj + 0.5 * log(2 * pi) - 0.5 * log(mo$h)
  }

  r_call <- paste0("X <- model.matrix(~ ", fixed, ", dat)[, -1, drop = FALSE]; ",
    "obj <- TMB::MakeADFun(data = list(y = dat$y - 1L, X = X, g = as.integer(dat$", group, ") - 1L), ",
    "parameters = list(beta = rep(0, ncol(X)), tau = rep(0, 4), theta = 0, b = rep(0, nlevels(dat$", group, "))), ",
    "random = \"b\", DLL = \"acat_glmm\"); opt <- nlminb(obj$par, obj$fn, obj$gr, control = list(rel.tol = 1e-14, ",
    "iter.max = 1e4, eval.max = 1e4)); then Newton steps (obj$gr, optimHess(p, obj$fn, obj$gr), step halving) ",
    "until max |gradient| < ", GTOL, "; TMB::sdreport(obj, par.fixed = p)")
  out <- list(
    case_id = id, dataset = dataset, data_file = data_file, data_note = data_note,
    factor_levels = factor_levels,
    formula = formula, family = "acat", link = "logit", nAGQ = 1L,
    r_call = r_call,
    engine = "TMB template tests/data/r/acat_glmm.cpp (TMB::MakeADFun, random = \"b\", Laplace) + nlminb + Newton polish",
    versions = versions,
    logLik = -as.numeric(nw$f), max_abs_gradient = max(abs(nw$g)),
    thresholds = list(names = TH_NAMES, estimate = arr(p[it]), se = arr(se[it])),
    beta = list(names = arr(colnames(X)), estimate = arr(p[ib]), se = arr(se[ib])),
    re_sd = setNames(list(unname(sd)), group),
    re_cor = setNames(list(NULL), group),
    re_sd_se = setNames(list(unname(rep_sd["sd", "Std. Error"])), group),
    theta = list(estimate = unname(p[ith]), se = unname(se[ith]),
                 note = "theta = log(sd); re_sd_se = se of sd by the delta method (sdreport of ADREPORT(sd))"),
    note = paste("acat (logit): P(y = k) proportional to exp(s_k), s_1 = 0, s_k = sum_{j<k} (eta - tau_j),",
                 "eta = X beta + b_group (X without intercept), b ~ N(0, sd^2), sd = exp(theta); fitted with the",
                 "TMB template tests/data/r/acat_glmm.cpp (the exact joint negative log density, so -fn at the optimum",
                 "is the Laplace logLik). max_abs_gradient: of -fn in (beta, tau, theta) (TMB's exact gradient).",
                 "se: TMB::sdreport at the polished parameters (inverse Hessian of the Laplace objective)."),
    nlminb = list(logLik = -opt$objective, convergence = opt$convergence, message = opt$message,
                  iterations = opt$iterations, warnings = arr(capO$warnings)),
    polish = list(status = nw$status, steps = nw$steps, logLik_gain = -nw$f + opt$objective,
                  max_abs_par_change = max(abs(p - opt$par))),
    status = nw$status,
    pdHess = sdr$pdHess, sdreport_warnings = arr(capS$warnings),
    parameterisation_check = list(
      note = paste("at the polished parameters and the conditional modes b^: the template's joint negative log",
                   "density obj$env$f(obj$env$last.par) against -[sum log P(y | b^) (acat_logp, from the",
                   "definition) + sum dnorm(b^, 0, sd, log = TRUE)] computed in R"),
      tmb_jnll = jnll_tmb, hand_jnll = -hand, difference = jnll_tmb + hand),
    laplace_check = list(
      note = paste("the Laplace logLik recomputed in R without TMB: per group, the mode of log p(y_g, b) by Newton",
                   "(d/db = sum (y - 1 - E[k - 1]) - b / sd^2, -d2/db2 = sum Var(k) + 1 / sd^2), then",
                   "sum_g [log p(y_g, b^_g) + log(2 pi) / 2 - log(-d2) / 2]"),
      logLik = lap, difference = lap - (-nw$f), max_abs_diff_modes = max(abs(bmode - bhat))),
    fit_time = elapsed)
  out
}

## ---------------------------------------------------------------- expansion check (no random effect)

expansion_check <- function(dat, covariates) {
  ex <- expand(dat, "y", K)
  gl <- glm(as.formula(paste("stop ~ 0 + j +", paste(covariates, collapse = " + "))), family = binomial, data = ex,
            control = glm.control(epsilon = 1e-14, maxit = 100))
  X <- model.matrix(as.formula(paste("~", paste(covariates, collapse = " + "))), dat)[, -1, drop = FALSE]
  y <- dat$y
  ## sratio log-likelihood from its definition: log P(y = k) = log F(tau_k - eta) + sum_{j<k} log(1 - F(tau_j - eta))
  nll <- function(par) {
    tau <- par[1:(K - 1)]; beta <- par[-(1:(K - 1))]; eta <- as.vector(X %*% beta)
    x <- outer(-eta, tau, "+")                          # n x (K-1): tau_j - eta
    logF <- plogis(x, log.p = TRUE); logS <- plogis(x, lower.tail = FALSE, log.p = TRUE)
    cumS <- cbind(0, t(apply(logS, 1, cumsum)))        # sum_{j<k} log S_j, k = 1..K
    lp <- cumS[cbind(seq_along(y), y)] + ifelse(y < K, logF[cbind(seq_along(y), pmin(y, K - 1))], 0)
    -sum(lp)
  }
  o <- optim(rep(0, K - 1 + ncol(X)), nll, method = "BFGS", control = list(reltol = 1e-15, maxit = 1e4))
  nw <- newton_numeric(nll, o$par, gtol = 1e-9)
  cf <- coef(gl)
  glm_as_sratio <- c(cf[paste0("j", 1:(K - 1))], -cf[colnames(X)])
  list(
    note = paste("independent check of the expansion without the random effect: glm(stop ~ 0 + j + covariates,",
                 "binomial) on the expansion vs the sratio likelihood written from its definition (log P(y = k) =",
                 "log F(tau_k - eta) + sum_{j<k} log(1 - F(tau_j - eta))), maximised directly by optim (BFGS) +",
                 "Newton (numerical derivatives as in r_call); direct_at_glm_estimates = the direct log-likelihood at glm's estimates",
                 "(thresholds = j coefficients, beta = -covariate coefficients)"),
    glm_logLik = as.numeric(logLik(gl)), direct_logLik = -nw$f, direct_max_abs_gradient = max(abs(nw$g)),
    logLik_difference = -nw$f - as.numeric(logLik(gl)),
    direct_at_glm_estimates_minus_glm_logLik = -nll(unname(glm_as_sratio)) - as.numeric(logLik(gl)),
    max_abs_diff_estimates = max(abs(nw$p - unname(glm_as_sratio))),
    glm_estimates_sratio_convention = list(names = arr(c(TH_NAMES, colnames(X))), estimate = arr(glm_as_sratio)),
    direct_estimates = arr(nw$p))
}

## ---------------------------------------------------------------- cases

wine_y <- transform(wine, y = rating)
WINE_FORMULA <- "rating ~ temp + contact + (1 | judge)"
summary_rows <- list()
report <- function(out) {
  write_case(out)
  summary_rows[[length(summary_rows) + 1]] <<- out
  cat(sprintf("%-26s logLik %.10f  max|grad| %.1e  (%s)\n", out$case_id, out$logLik, out$max_abs_gradient,
              out$status))
}

for (cs in list(list("wine_sratio_logit", "logit", 1), list("wine_sratio_probit", "probit", 1),
                list("wine_sratio_cloglog", "cloglog", 1), list("wine_sratio_logit_agq10", "logit", 10))) {
  r <- sratio_case(cs[[1]], wine_y, "ordinal::wine", "wine.csv", WINE_NOTE, WINE_LEVELS, WINE_FORMULA,
                   c("temp", "contact"), "1", "judge", link = cs[[2]], nAGQ = cs[[3]])
  out <- r$out
  if (cs[[1]] == "wine_sratio_logit") out$expansion_check <- expansion_check(wine_y, c("temp", "contact"))
  report(out)
}
r <- sratio_case("sratio_sim_slope", sratio_sim, "simulated", "sratio_sim.csv", SIM_NOTE("sratio_sim.csv"),
                 SIM_LEVELS, "y ~ x + (1 + x | g)", "x", "1 + x", "g")
report(r$out)

report(acat_case("wine_acat_logit", wine_y, "ordinal::wine", "wine.csv", WINE_NOTE, WINE_LEVELS, WINE_FORMULA,
                 "temp + contact", "judge"))
report(acat_case("acat_sim", acat_sim, "simulated", "acat_sim.csv", SIM_NOTE("acat_sim.csv"), SIM_LEVELS,
                 "y ~ x + (1 | g)", "x", "g"))

cat("\nchecks:\n")
for (o in summary_rows) {
  d <- o$engine_differences
  if (!is.null(d))
    cat(sprintf("%-26s glmer - glmmTMB: logLik %.1e, thresholds/beta %.1e, sd %.1e, se %.1e; Fisher-weight Laplace by hand - glmer %s\n",
                o$case_id, d$logLik_glmer_minus_glmmTMB, d$max_abs_diff_thresholds_beta, d$max_abs_diff_re_sd,
                d$max_abs_diff_se, if (is.null(d$fisher_weights_minus_glmer)) "-" else sprintf("%.1e", d$fisher_weights_minus_glmer)))
  if (!is.null(o$glmer))
    cat(sprintf("%-26s glmer polish: %s, max|grad| %.1e%s\n", o$case_id, o$glmer$polish_status,
                o$glmer$max_abs_gradient, if (isTRUE(o$glmer$unpolished$is_singular)) ", SINGULAR" else ""))
  if (!is.null(o$expansion_check))
    cat(sprintf("%-26s expansion check: glm vs direct logLik diff %.1e, estimates diff %.1e\n", o$case_id,
                o$expansion_check$logLik_difference, o$expansion_check$max_abs_diff_estimates))
  if (!is.null(o$parameterisation_check))
    cat(sprintf("%-26s parameterisation check diff %.1e\n", o$case_id, o$parameterisation_check$difference))
  cat(sprintf("%-26s laplace_check (by hand) diff %.1e\n", o$case_id, o$laplace_check$difference))
  w <- c(o$glmer$unpolished$warnings, o$glmer$unpolished$conv_messages, o$glmmTMB$unpolished$warnings,
         o$glmmTMB$sdreport_warnings, o$nlminb$warnings, o$sdreport_warnings)
  if (length(w)) cat(sprintf("%-26s warnings: %s\n", o$case_id, paste(w, collapse = " | ")))
}
