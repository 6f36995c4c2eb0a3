## glmmTMB reference fits for the reduced-rank (rr) and Toeplitz (toep) random-effect covariances, on simulated
## gaussian data with TWO observations per random-effect cell, so the residual SD is identified separately from
## the random-effect variances (unlike structured_references.json's toep_reml, where sigma -> 0).
##
## Run from the repository root:   Rscript tests/data/r/rr_toep_references.R
## Writes tests/data/rr_species.csv (data E), tests/data/toep_times.csv (data F) (simulated, doubles as the
## shortest round-trip decimals, read back equal), tests/data/rr_toep_references.json (all cases) and prints a
## summary table. Every case is wrapped in tryCatch, so one failure does not stop the rest; a failed case is
## recorded under `failures` in the JSON and reported at the end.
##
## Control: each case is first fitted with glmmTMB's default control; if that fit warns, it is refitted with
## control = glmmTMBControl(optCtrl = list(iter.max = 1e4, eval.max = 1e4)) and the refit is the reference
## (`control_used`, `default_fit`); toep_reml, whose refit still warns, is fitted a third time from toep_ml's
## estimates (`refit_fit`, `r_call`). usable = no warning in the reference fit, pdHess, not at a boundary.
## `newton_polish` (not a glmmTMB call): Newton steps on the fit's own objective from its optimum.
##
## Number formatting, CSV writer, JSON conventions, the Newton polish, the summary table's common columns and the
## read-back checks are in tests/data/r/reference_helpers.R.
##
## Tested with R 4.2.2, glmmTMB 1.1.5, TMB 1.9.2, Matrix 1.5-3, jsonlite 1.8.4 (Debian bookworm packages).

source(file.path("tests", "data", "r", "reference_helpers.R"))   # arr, mat, capture, parse_exact, write_csv_exact,
                                                                 # newton_polish, glmmTMB helpers
OUT <- start_script(c("glmmTMB", "jsonlite"))   # OUT = tests/data

versions <- glmmtmb_versions()

## ---------------------------------------------------------------- data

set.seed(20261204)   # default RNG kinds (Mersenne-Twister, Inversion, Rejection)

## Data E: 60 sites x 5 species, each site x species cell observed twice. Site effects b[site, ] = Lambda %*% f,
## f ~ N(0, I_2) (rank-2 covariance Lambda Lambda'); y = 1 + b[site, species] + N(0, 0.5^2).
## Draw order: f = matrix(rnorm(60 * 2), 60, 2, byrow = TRUE) (row s = f_s), then the noise rnorm(600, 0, 0.5).
## Rows: site-major, species sp1..sp5 within site, the two replicates of a cell adjacent.
LAMBDA_TRUE <- rbind(c(1, 0), c(0.8, 0.5), c(-0.5, 0.7), c(0.3, -0.6), c(0.6, 0.4))
nE_site <- 60; nE_sp <- 5; nE_rep <- 2
fE <- matrix(rnorm(nE_site * 2), nE_site, 2, byrow = TRUE)
bE <- fE %*% t(LAMBDA_TRUE)                                   # 60 x 5, row s = Lambda %*% f_s
siteE <- rep(seq_len(nE_site), each = nE_sp * nE_rep)
spE <- rep(rep(seq_len(nE_sp), each = nE_rep), times = nE_site)
yE <- 1 + bE[cbind(siteE, spE)] + rnorm(length(siteE), 0, 0.5)
E <- data.frame(y = yE, sp = factor(sprintf("sp%d", spE), levels = sprintf("sp%d", seq_len(nE_sp))),
                site = factor(sprintf("s%02d", siteE)))

## Data F: 80 subjects x 4 times, each subject x time cell observed twice. b[subject, ] ~ MVN(0, T), T the
## Toeplitz correlation with lags (0.5, 0.2, 0.1) (unit SDs); y = 1 + 0.5 x + b[subject, time] + N(0, 0.5^2).
## Draw order (after data E): x = rnorm(640); Z = matrix(rnorm(80 * 4), 80, 4, byrow = TRUE); b = Z %*% chol(T)
## (chol upper triangular, T = R'R); then the noise rnorm(640, 0, 0.5).
## Rows: subject-major, time t1..t4 within subject, the two replicates of a cell adjacent.
LAGS_TRUE <- c(0.5, 0.2, 0.1)
nF_subj <- 80; nF_time <- 4; nF_rep <- 2
TOEP_TRUE <- toeplitz(c(1, LAGS_TRUE))
nF <- nF_subj * nF_time * nF_rep
xF <- rnorm(nF)
ZF <- matrix(rnorm(nF_subj * nF_time), nF_subj, nF_time, byrow = TRUE)
bF <- ZF %*% chol(TOEP_TRUE)
subjF <- rep(seq_len(nF_subj), each = nF_time * nF_rep)
timeF <- rep(rep(seq_len(nF_time), each = nF_rep), times = nF_subj)
yF <- 1 + 0.5 * xF + bF[cbind(subjF, timeF)] + rnorm(nF, 0, 0.5)
F <- data.frame(y = yF, x = xF, times = factor(sprintf("t%d", timeF), levels = sprintf("t%d", seq_len(nF_time))),
                subject = factor(sprintf("s%02d", subjF)))

csvE <- file.path(OUT, "rr_species.csv"); csvF <- file.path(OUT, "toep_times.csv")
write_csv_exact(E, csvE); write_csv_exact(F, csvF)
cat("wrote", csvE, "(", nrow(E), "rows ) and", csvF, "(", nrow(F), "rows ); read-back exact\n")

## The fits below use the data re-read from the CSVs (identical values; checked).
E2 <- read.csv(csvE, colClasses = c(y = "character", sp = "character", site = "character"))
E2$y <- parse_exact(E2$y); E2$sp <- factor(E2$sp, levels = levels(E$sp)); E2$site <- factor(E2$site)
F2 <- read.csv(csvF, colClasses = c(y = "character", x = "character", times = "character", subject = "character"))
F2$y <- parse_exact(F2$y); F2$x <- parse_exact(F2$x)
F2$times <- factor(F2$times, levels = levels(F$times)); F2$subject <- factor(F2$subject)
stopifnot(isTRUE(all.equal(E2, E, tolerance = 0)), identical(E2$y, E$y), identical(levels(E2$site), levels(E$site)),
          isTRUE(all.equal(F2, F, tolerance = 0)), identical(F2$y, F$y), identical(F2$x, F$x),
          identical(levels(F2$subject), levels(F$subject)))
E <- E2; F <- F2

SIM_CODE <- paste(
  "set.seed(20261204); default RNG kinds. Data E (rr_species.csv): Lambda = rbind(c(1, 0), c(0.8, 0.5),",
  "c(-0.5, 0.7), c(0.3, -0.6), c(0.6, 0.4)); f = matrix(rnorm(120), 60, 2, byrow = TRUE); b = f %*% t(Lambda)",
  "(row s = b[site s, sp1..sp5]); rows site-major, species sp1..sp5 within site, 2 replicates per cell adjacent",
  "(600 rows); y = 1 + b[site, sp] + rnorm(600, 0, 0.5); site = sprintf('s%02d', s), sp = sprintf('sp%d', j).",
  "Then data F (toep_times.csv): T = toeplitz(c(1, 0.5, 0.2, 0.1)); x = rnorm(640);",
  "Z = matrix(rnorm(320), 80, 4, byrow = TRUE); b = Z %*% chol(T); rows subject-major, time t1..t4 within",
  "subject, 2 replicates per cell adjacent (640 rows); y = 1 + 0.5 x + b[subject, time] + rnorm(640, 0, 0.5);",
  "subject = sprintf('s%02d', s), times = sprintf('t%d', t).")

## ---------------------------------------------------------------- parameterisation

PARAM_NOTES <- list(
  source = paste("glmmTMB 1.1.5 src/glmmTMB.cpp, termwise_nll (cases rr_covstruct = 9 and toep_covstruct = 8; read in",
                 "the GitHub source of that era) and the installed R code (getReStruc: blockNumTheta; getXReTrms:",
                 "the rr rank argument; mkTMBStruc: start values). Each map below is checked numerically against",
                 "the installed glmmTMB 1.1.5's VarCorr (theta_check) and, for rr, against the template's own",
                 "REPORTed loadings m$obj$env$report()$fact_load."),
  theta = paste("theta = getME(fit, 'theta') = fit$fit$par[names == 'theta'] (one random-effect term here)."),
  rr = paste("rr(sp + 0 | site, d) with p = blockSize (5 here) and rank d (2 here): p d - d (d - 1) / 2 parameters",
             "(9 here). Lambda is p x d LOWER TRIANGULAR (Lambda[i, j] = 0 for j > i): theta[1..d] are the",
             "diagonal Lambda[1,1], ..., Lambda[d,d] (NOT logged, any sign); theta[d+1..] fill the strictly lower",
             "part COLUMN by column (Lambda[2..p, 1], then Lambda[3..p, 2], ...). The site effects are",
             "b_s = Lambda u_s with u_s ~ N(0, I_d), so Cov(b_s) = Lambda Lambda' = VarCorr's covariance",
             "(sd = sqrt(diag), corr = cov2cor). Lambda is identified only up to the sign of each column",
             "(Lambda D, D = diag(+-1), gives the same covariance and likelihood), and other rotations of Lambda",
             "(Lambda Q, Q orthogonal) give the same covariance but break the triangular form: compare the implied",
             "covariance (implied_cov), not the loadings. The first d entries of each site's b vector carry u_s;",
             "the remaining p - d are N(0, 1) and do not enter the linear predictor. Start: theta = 1 for all rr",
             "parameters (mkTMBStruc's t01)."),
  rr_syntax = paste("glmmTMB 1.1.5 reads the rank as the second argument of rr(): getXReTrms evaluates the",
                    "term's extra argument by position (v[[2]] of the call with the bar term removed), so",
                    "rr(sp + 0 | site, d = 2) and rr(sp + 0 | site, 2) are the same model (checked: identical",
                    "logLik and par, rr_checks.syntax_positional); without it the rank defaults to 2."),
  toep = paste("toep: theta = (log sd_1..n, p_1..p_{n-1}) (2n - 1 parameters; n = 4 here: 7); lag-k correlation",
               "r_k = p_k / sqrt(1 + p_k^2); corr[i, j] = r_|i-j| (level order of the term's factor). The map does",
               "not guarantee a positive-definite corr (min_eigen_corr records it)."),
  sigma = paste("gaussian: betad = fit$fit$par['betad'] (dispformula ~1) is log(sigma^2): sigma(fit) =",
                "exp(betad / 2) in glmmTMB 1.1.5 (checked per case: sigma_check)."),
  REML = paste("REML = TRUE: glmmTMB integrates the fixed effects out with the random effects (Laplace, exact",
               "for gaussian), so fit$fit$par holds only theta and betad; fixef(fit) are the conditional modes",
               "(GLS estimates), se from vcov(fit) (sdreport). logLik is the restricted log-likelihood; its df",
               "counts the fixed effects too, as lme4 does."))

## Lambda (p x d) from an rr term's theta, following PARAM_NOTES$rr (the C++ loop, 0-based index
## j * p - (j + 1) * j / 2 + i - 1 - j into the lower part, i > j).
rr_rank <- function(p, nt) as.integer((2 * p + 1 - floor(sqrt((2 * p + 1)^2 - 8 * nt))) / 2)
rr_lambda <- function(th, p) {
  d <- rr_rank(p, length(th))
  lam_diag <- th[seq_len(d)]; lam_lower <- th[-seq_len(d)]
  L <- matrix(0, p, d)
  for (j in 0:(d - 1)) for (i in 0:(p - 1)) {
    if (i == j) L[i + 1, j + 1] <- lam_diag[j + 1]
    else if (i > j) L[i + 1, j + 1] <- lam_lower[j * p - (j + 1) * j / 2 + i - 1 - j + 1]
  }
  L
}

## sd, corr (and cov) of one term from its theta.
theta_to_vc <- function(code, th, n) {
  if (code == 9) {
    L <- rr_lambda(th, n); S <- L %*% t(L); sd <- sqrt(diag(S))
    return(list(structure = "rr", sd = sd, corr = S / outer(sd, sd), cov = S, loadings = L))
  }
  if (code == 8) {
    sd <- exp(th[seq_len(n)]); p <- th[n + seq_len(n - 1)]; r <- p / sqrt(1 + p^2)
    corr <- diag(n); for (i in seq_len(n)) for (j in seq_len(n)) if (i != j) corr[i, j] <- r[abs(i - j)]
    return(list(structure = "toep", sd = sd, corr = corr, cov = corr * outer(sd, sd), lags = r, p = p))
  }
  stop("structure not handled: ", code)
}

## VarCorr of the conditional model's (single) term, with the structure's own quantities and checks.
tmb_varcorr <- function(m, th) {
  vc <- VarCorr(m)$cond
  reS <- m$modelInfo$reStruc$condReStruc
  stopifnot(length(vc) == 1, length(reS) == 1)
  S <- vc[[1]]; code <- reS[[1]]$blockCode; n <- reS[[1]]$blockSize; nt <- reS[[1]]$blockNumTheta
  stopifnot(nt == length(th))
  rec <- theta_to_vc(code, th, n)
  sd <- attr(S, "stddev"); corr <- as.matrix(attr(S, "correlation")); cov <- matrix(as.numeric(S), n, n)
  d <- max(abs(rec$sd - sd), abs(rec$corr - corr), abs(rec$cov - cov))
  out <- list(group = names(vc)[1], term = names(reS)[1], structure = rec$structure, blockCode = unname(code),
              blockSize = n, blockReps = reS[[1]]$blockReps, n_theta = nt,
              terms = arr(colnames(S)), sd = arr(sd), var = arr(sd^2), corr = mat(corr), cov = mat(cov),
              theta = arr(th))
  if (rec$structure == "rr") {
    fl <- m$obj$env$report(m$fit$parfull)$fact_load[[1]]
    sv <- svd(rec$loadings)$d
    out$rank <- ncol(rec$loadings)
    out$loadings <- mat(rec$loadings)
    out$loadings_note <- paste("Lambda from theta by PARAM_NOTES$rr (rows = terms, columns = factors); equal to",
                               "the template's REPORTed fact_load (loadings_vs_fact_load_max_abs_diff); identified",
                               "only up to column signs; compare implied_cov")
    out$loadings_vs_fact_load_max_abs_diff <- max(abs(rec$loadings - fl))
    out$implied_cov <- mat(rec$cov)
    out$implied_cov_vs_VarCorr_max_abs_diff <- max(abs(rec$cov - cov))
    out$loadings_singular_values <- arr(sv)
    out$implied_cov_eigenvalues <- arr(eigen(rec$cov, symmetric = TRUE, only.values = TRUE)$values)
  } else {
    lag_vc <- sapply(seq_len(n - 1), function(k) corr[cbind(seq_len(n - k), seq_len(n - k) + k)], simplify = FALSE)
    out$lag_corr <- arr(sapply(lag_vc, `[`, 1))
    out$lag_corr_range_along_diagonals <- mat(t(sapply(lag_vc, range)))
    out$lag_p <- arr(rec$p)
    out$lag_corr_from_p <- arr(rec$lags)
    out$lag_corr_from_p_vs_VarCorr_max_abs_diff <- max(abs(rec$lags - sapply(lag_vc, `[`, 1)))
    out$min_eigen_corr <- min(eigen(corr, symmetric = TRUE, only.values = TRUE)$values)
  }
  out$theta_check <- list(sd = arr(rec$sd), corr = mat(rec$corr), cov = mat(rec$cov),
                          max_abs_diff_vs_VarCorr = d)
  list(terms = list(out), theta_check_max_abs_diff = d)
}

## Newton polish (reference_helpers.R) with the term's quantities from the polished theta.
polish_terms <- function(th, reS) {
  rec <- theta_to_vc(reS[[1]]$blockCode, th, reS[[1]]$blockSize)
  t1 <- list(term = names(reS)[1], structure = rec$structure, sd = arr(rec$sd), corr = mat(rec$corr),
             cov = mat(rec$cov))
  if (rec$structure == "rr") { t1$loadings <- mat(rec$loadings); t1$implied_cov <- mat(rec$cov) }
  else t1$lag_corr <- arr(rec$lags)
  list(t1)
}
polish <- function(m) newton_polish(m, polish_terms,
                                    "sd / corr / cov (rr: loadings, implied_cov) from theta by the PARAM_NOTES maps;")

## Gaussian: GLS fixed effects, lme4-style se, and the log-likelihood computed directly from the marginal MVN at
## the fitted covariance: V = Z Cov(b) Z' + sigma^2 I, Cov(b) = kronecker(I_reps, VarCorr matrix) (glmmTMB orders b
## group by group, the term's columns within a group; for rr, Z has p columns per group and Cov(b_s) = Lambda
## Lambda'). ML: log N(y; X beta_hat, V); REML: that - 1/2 log|X'V^-1X| + (p/2) log(2 pi).
gls_check <- function(m) {
  vc <- VarCorr(m)$cond; reS <- m$modelInfo$reStruc$condReStruc
  tmb_gls(m, kronecker(diag(reS[[1]]$blockReps), matrix(as.numeric(vc[[1]]), reS[[1]]$blockSize)))
}

tmb_block_e <- function(m, cap, call_text)   # all fits here are gaussian
  tmb_block(m, cap, call_text, vc_print = function(m) arr(capture.output(print(VarCorr(m)))))

## Boundary, judged from the fit: sigma or an SD below 1e-3; rr: smallest singular value of Lambda below 1e-3
## (a factor collapsing); toep: a lag correlation beyond +-0.999 or a corr eigenvalue below 1e-6.
## (rr correlations near +-1 are NOT a boundary: a rank-2 5 x 5 covariance has them by construction.)
boundary_of <- function(blk) {
  vc <- blk$varcorr[[1]]
  why <- character()
  if (blk$sigma < 1e-3) why <- c(why, "sigma < 1e-3")
  if (min(unlist(vc$sd)) < 1e-3) why <- c(why, "an SD < 1e-3")
  if (vc$structure == "rr" && min(unlist(vc$loadings_singular_values)) < 1e-3) why <- c(why, "Lambda rank-deficient")
  if (vc$structure == "toep") {
    if (max(abs(unlist(vc$lag_corr))) > 0.999) why <- c(why, "|lag corr| > 0.999")
    if (vc$min_eigen_corr < 1e-6) why <- c(why, "corr not positive definite")
  }
  why
}

## ---------------------------------------------------------------- cases

cases <- list(); failures <- list(); rows <- list()
DATA_FILE <- c(E = "rr_species.csv", F = "toep_times.csv")


## fallback: NULL, or a function returning list(call = <call text>, label = <words>), tried when the refit still
## warns (it is built when needed, so it may use earlier cases' fits).
run_case <- function(case_id, call_text, data_id, notes = NULL, fallback = NULL) {
  res <- tryCatch({
    f <- fit_with_refit(call_text, with_par = TRUE)
    m <- f$m; cap <- f$cap; used_call <- f$used_call; control_used <- f$control_used; default_warn <- f$default_warn
    refit_warn <- NULL
    if (!is.null(default_warn)) {
      if (length(cap$warnings) && !is.null(fallback)) {
        refit_warn <- warned_fit(m, cap, used_call, with_par = TRUE)
        fb <- fallback()
        used_call <- fb$call
        cap <- capture(eval(parse(text = used_call), envir = globalenv()))
        m <- cap$value; control_used <- fb$label
      }
    }
    for (w in c("default_warn", "refit_warn")) {   # the warned fits against the reference fit
      x <- get(w)
      if (!is.null(x)) {
        x$logLik_minus_reference <- x$logLik - as.numeric(logLik(m))
        x$max_abs_diff_par_vs_reference <- max(abs(unlist(x$par$values) - m$fit$par))
        assign(w, x)
      }
    }
    blk <- tmb_block_e(m, cap, used_call)
    bnd <- boundary_of(blk)
    usable <- length(cap$warnings) == 0 && isTRUE(blk$pdHess) && length(bnd) == 0
    fits[[case_id]] <<- m
    pol <- try_polish(polish, m)
    cases[[case_id]] <<- list(
      case_id = case_id, data = data_id, data_file = DATA_FILE[[data_id]],
      estimation = if (blk$REML) "REML" else "ML",
      r_call = used_call, control_used = control_used, default_fit = default_warn, refit_fit = refit_warn,
      usable = usable, boundary = length(bnd) > 0, boundary_reasons = arr(bnd), notes = notes,
      results = blk, newton_polish = pol)
    vc1 <- blk$varcorr[[1]]
    rows[[case_id]] <<- tmb_summary_row(
      case_id, control_used, usable, blk, pol, cap, list(default = default_warn, refit = refit_warn),
      est = if (blk$REML) "REML" else "ML",
      sd = paste(sprintf("%.6f", unlist(vc1$sd)), collapse = " "),
      lags = if (is.null(vc1$lag_corr)) "" else paste(sprintf("%.6f", unlist(vc1$lag_corr)), collapse = " "),
      polish = or_na(pol$status))
    "ok"
  }, error = function(e) { failures[[case_id]] <<- conditionMessage(e); paste("FAILED:", conditionMessage(e)) })
  cat(sprintf("%-10s %s\n", case_id, res))
}

fits <- list()
run_case("rr_ml", "glmmTMB(y ~ 0 + sp + rr(sp + 0 | site, d = 2), data = E, REML = FALSE)", "E",
         notes = paste("reduced rank 2 site x species covariance, ML. True values: Lambda as in data.E.truth",
                       "(implied covariance Lambda Lambda' in data.E.truth.cov), sigma 0.5, fixef 1 for each species.",
                       "Compare implied_cov (= VarCorr's covariance), sd, corr, sigma, logLik, fixef; the loadings",
                       "only up to column signs. Correlations near +-1 (sp2-sp5) are a property of the rank-2",
                       "truth (true sp2-sp5 correlation 0.9996), not a boundary."))
run_case("toep_ml", "glmmTMB(y ~ x + toep(times + 0 | subject), data = F, REML = FALSE)", "F",
         notes = "heterogeneous Toeplitz, ML. True values: sd 1 (each time), lags (0.5, 0.2, 0.1), sigma 0.5, beta (1, 0.5).")
## toep_reml fallback: start theta and betad at toep_ml's estimates (a natural REML start), written into the call.
toep_reml_from_ml <- function() {
  p <- fits$toep_ml$fit$par
  list(call = sprintf(paste("glmmTMB(y ~ x + toep(times + 0 | subject), data = F, REML = TRUE,",
                            "start = list(theta = c(%s), betad = %s))"),
                      paste(fmt_num(unname(p[names(p) == "theta"])), collapse = ", "),
                      fmt_num(unname(p[["betad"]]))),
       label = "start = toep_ml's estimates (theta, betad), default control")
}
run_case("toep_reml", "glmmTMB(y ~ x + toep(times + 0 | subject), data = F, REML = TRUE)", "F",
         fallback = toep_reml_from_ml,
         notes = paste("heterogeneous Toeplitz, REML. True values: sd 1 (each time), lags (0.5, 0.2, 0.1), sigma 0.5,",
                       "beta (1, 0.5). fixef are the conditional modes (GLS). The default fit and the",
                       "iter.max/eval.max refit both warn 'NA/NaN function evaluation' (nlminb steps once through",
                       "a theta where the Toeplitz correlation is not positive definite; both still end with",
                       "relative convergence and pdHess, default_fit / refit_fit); the reference fit starts from",
                       "toep_ml's estimates (r_call) and does not warn. The warned fits reach the same optimum",
                       "(default_fit.logLik_minus_reference, max_abs_diff_par_vs_reference)."))

## ---------------------------------------------------------------- rr checks: syntax and starts

rr_checks <- tryCatch({
  m0 <- fits$rr_ml
  S0 <- matrix(as.numeric(VarCorr(m0)$cond[[1]]), 5)
  one <- function(label, call_text) {
    cap <- capture(eval(parse(text = call_text), envir = globalenv()), catch_errors = TRUE)
    m <- cap$value
    if (inherits(m, "captured_error")) return(list(label = label, r_call = call_text, error = m$error))
    S <- matrix(as.numeric(VarCorr(m)$cond[[1]]), 5)
    th <- unname(getME(m, "theta"))
    list(label = label, r_call = call_text, logLik = as.numeric(logLik(m)),
         logLik_minus_rr_ml = as.numeric(logLik(m)) - as.numeric(logLik(m0)),
         theta = arr(th), loadings = mat(rr_lambda(th, 5)),
         max_abs_diff_implied_cov_vs_rr_ml = max(abs(S - S0)),
         abs_diff_sigma_vs_rr_ml = abs(sigma(m) - sigma(m0)),
         max_abs_diff_fixef_vs_rr_ml = max(abs(fixef(m)$cond - fixef(m0)$cond)),
         max_abs_diff_par_vs_rr_ml = max(abs(m$fit$par - m0$fit$par)),
         convergence = m$fit$convergence, pdHess = m$sdr$pdHess,
         fit_warnings = arr(cap$warnings), fit_messages = arr(cap$messages))
  }
  set.seed(20261205)
  st <- lapply(1:3, function(k) round(rnorm(9), 3))
  res <- list(
    syntax_positional = one("rank as positional argument",
                            "glmmTMB(y ~ 0 + sp + rr(sp + 0 | site, 2), data = E, REML = FALSE)"),
    start_res = one("start_method = 'res' (glmmTMB's residual-based rr start)",
                    "glmmTMB(y ~ 0 + sp + rr(sp + 0 | site, d = 2), data = E, REML = FALSE, control = glmmTMBControl(start_method = list(method = 'res')))"))
  for (k in seq_along(st)) {
    res[[paste0("start_random_", k)]] <- one(
      sprintf("start theta = rnorm(9) rounded to 3 decimals (set.seed(20261205), draw %d)", k),
      sprintf("glmmTMB(y ~ 0 + sp + rr(sp + 0 | site, d = 2), data = E, REML = FALSE, start = list(theta = c(%s)))",
              paste(sprintf("%.3f", st[[k]]), collapse = ", ")))
  }
  res$note <- paste("Refits of rr_ml: the positional rank syntax, glmmTMB's residual-based start (start_method",
                    "'res'; draws random numbers, run after set.seed(20261205) and the three start vectors), and three",
                    "random theta starts. Each should reach the same optimum: logLik, implied covariance, sigma and",
                    "fixef equal to rr_ml's to optimizer tolerance; loadings may differ in column signs.")
  res
}, error = function(e) list(error = conditionMessage(e)))

## ---------------------------------------------------------------- JSON

true_cov_E <- LAMBDA_TRUE %*% t(LAMBDA_TRUE)
top <- list(
  description = paste("glmmTMB reference fits for the reduced-rank (rr) and Toeplitz (toep) random-effect",
                      "covariances on simulated gaussian data with two observations per random-effect cell",
                      "(residual SD identified)."),
  script = "tests/data/r/rr_toep_references.R", versions = versions, simulation = SIM_CODE,
  data = list(
    E = list(file = "rr_species.csv", nrow = nrow(E), columns = arr(names(E)),
             n_sites = nlevels(E$site), n_species = nlevels(E$sp), replicates_per_cell = nE_rep,
             factor_levels = list(sp = arr(levels(E$sp)), site = arr(levels(E$site))),
             truth = list(Lambda = mat(LAMBDA_TRUE), cov = mat(true_cov_E), sd = arr(sqrt(diag(true_cov_E))),
                          corr = mat(cov2cor(true_cov_E)), sigma = 0.5, fixef = arr(rep(1, 5))),
             true_f = list(note = "the simulated factors f (rows = sites in level order, columns = factors 1, 2)",
                           values = mat(fE)),
             true_b = list(note = "b = f %*% t(Lambda) (rows = sites, columns = sp1..sp5)", values = mat(bE))),
    F = list(file = "toep_times.csv", nrow = nrow(F), columns = arr(names(F)),
             n_subjects = nlevels(F$subject), n_times = nlevels(F$times), replicates_per_cell = nF_rep,
             factor_levels = list(times = arr(levels(F$times)), subject = arr(levels(F$subject))),
             truth = list(lags = arr(LAGS_TRUE), corr = mat(TOEP_TRUE), sd = arr(rep(1, 4)), sigma = 0.5,
                          beta = arr(c(1, 0.5))),
             true_b = list(note = "the simulated b[subject, time] (rows = subjects in level order, columns = t1..t4)",
                           values = mat(bF)))),
  control_rule = paste("default glmmTMB control; a case whose default fit warns is refitted with control =",
                       REFIT_CONTROL, "(control_used; the default fit's warnings in default_fit); when the refit",
                       "still warns and the case has a fallback (toep_reml: start at toep_ml's theta and betad),",
                       "that is the reference (refit_fit holds the refit). usable = no",
                       "warning in the reference fit, pdHess, and not at a boundary (boundary_reasons)."),
  parameterisation = PARAM_NOTES,
  cases = cases,
  rr_checks = rr_checks)
## written, then read back: valid JSON, numbers exact
back <- write_json_read_back(top, failures, file.path(OUT, "rr_toep_references.json"), show_size = FALSE)
stopifnot(tmb_read_back_ok(back, cases),
          all(vapply(names(cases), function(cid) read_back_identical(back$cases[[cid]]$results$varcorr[[1]]$cov,
                                                                     cases[[cid]]$results$varcorr[[1]]$cov), TRUE)))

## ---------------------------------------------------------------- summary

tab <- summary_table(rows)
print(tab[, c("case_id", "est", "control", "usable", "logLik", "df", "sigma", "conv", "pdHess", "grad",
              "theta_chk", "ll_direct", "polish", "polish_dll", "polish_dpar")], row.names = FALSE)
for (i in seq_len(nrow(tab))) {
  cat(sprintf("\n%s: sd %s\n", tab$case_id[i], tab$sd[i]))
  if (nzchar(tab$lags[i])) cat("  lag corr:", tab$lags[i], "\n")
  cat("  fixef (se):", tab$fixef[i], "\n")
  cat("  warnings:", if (nzchar(tab$warnings[i])) tab$warnings[i] else "none", "\n")
}
if (!is.null(cases$rr_ml)) {
  vc <- cases$rr_ml$results$varcorr[[1]]
  cat("\nrr_ml implied covariance Lambda Lambda' (rows):\n"); print(vc$implied_cov)
  cat("rr_ml loadings (from theta):\n"); print(vc$loadings)
  cat("loadings vs fact_load:", vc$loadings_vs_fact_load_max_abs_diff, " implied cov vs VarCorr:",
      vc$implied_cov_vs_VarCorr_max_abs_diff, "\n")
}
cat("\nrr_checks:\n")
for (nm in setdiff(names(rr_checks), "note")) {
  r <- rr_checks[[nm]]
  if (!is.null(r$error)) cat(sprintf("  %-18s ERROR %s\n", nm, r$error))
  else cat(sprintf("  %-18s dlogLik %.3e  dcov %.3e  dsigma %.3e  dfixef %.3e  conv %d pdHess %s warnings %s\n", nm,
                   r$logLik_minus_rr_ml, r$max_abs_diff_implied_cov_vs_rr_ml, r$abs_diff_sigma_vs_rr_ml,
                   r$max_abs_diff_fixef_vs_rr_ml, r$convergence, r$pdHess,
                   if (length(r$fit_warnings)) paste(r$fit_warnings, collapse = " | ") else "none"))
}
report_failures(failures)
