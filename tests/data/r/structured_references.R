## glmmTMB reference fits with STRUCTURED random-effect covariances: ar1, cs, diag, us, toep
## (plus lme4 comparisons for diag and us) on two simulated data sets.
##
## Run from the repository root:   Rscript tests/data/r/structured_references.R
## Writes tests/data/structured_gauss.csv, tests/data/structured_counts.csv (simulated, doubles as the shortest
## round-trip decimals, read back equal), tests/data/structured_references.json (all cases) and prints a summary
## table. Every case is wrapped in tryCatch, so one failure does not stop the rest; a failed case is recorded
## under `failures` in the JSON and reported at the end.
##
## Control: each case is first fitted with glmmTMB's default control; if that fit warns, it is refitted with
## control = glmmTMBControl(optCtrl = list(iter.max = 1e4, eval.max = 1e4)) and the refit is the reference
## (`control_used`, `default_fit_warnings`). `newton_polish` (not a glmmTMB call): Newton steps on the fit's own
## objective from its optimum, to show how far the nlminb stop is from the optimum.
##
## Number formatting, CSV writer, JSON conventions and the Newton polish are in tests/data/r/reference_helpers.R
## (those of tests/data/r/zero_references.R), and so are the covariance structures' block codes (BLOCK_NAMES), the
## summary table's common columns and the read-back checks.
##
## Tested with R 4.2.2, glmmTMB 1.1.5, TMB 1.9.2, lme4 1.1-31, Matrix 1.5-3, jsonlite 1.8.4
## (Debian bookworm packages).

source(file.path("tests", "data", "r", "reference_helpers.R"))   # arr, mat, capture, parse_exact, write_csv_exact,
                                                                 # newton_polish, glmmTMB helpers
OUT <- start_script(c("glmmTMB", "lme4", "jsonlite"))   # OUT = tests/data

versions <- glmmtmb_versions(list(lme4 = as.character(packageVersion("lme4"))))

## ---------------------------------------------------------------- data

set.seed(20261204)   # default RNG kinds (Mersenne-Twister, Inversion, Rejection)

## Simulate one data set. Draw order: x (n_subj * n_time), then Z (n_subj * n_time standard normals,
## subject by subject: matrix(..., byrow = TRUE)), then the noise (gaussian: rnorm(n, 0, 0.5); poisson: rpois).
## b = Z %*% R with R = chol(Sigma) (upper triangular, Sigma = R'R), so each row b[s, ] ~ N(0, Sigma),
## Sigma = sd^2 * rho^|i - j|. Rows: subject-major, time 1..n_time within subject.
ar1_sigma <- function(n, rho, sd) sd^2 * rho^abs(outer(seq_len(n), seq_len(n), "-"))

sim_structured <- function(n_subj, n_time, rho, sd, beta, gaussian) {
  n <- n_subj * n_time
  subject <- sprintf("s%02d", rep(seq_len(n_subj), each = n_time))
  time <- rep(seq_len(n_time), times = n_subj)
  x <- rnorm(n)
  Z <- matrix(rnorm(n), nrow = n_subj, ncol = n_time, byrow = TRUE)
  R <- chol(ar1_sigma(n_time, rho, sd))
  B <- Z %*% R
  b <- B[cbind(rep(seq_len(n_subj), each = n_time), time)]
  eta <- beta[1] + beta[2] * x + b
  y <- if (gaussian) eta + rnorm(n, 0, 0.5) else rpois(n, exp(eta))
  list(data = data.frame(y = if (gaussian) y else as.integer(y), x = x, time = time,
                         times = factor(time, levels = as.character(seq_len(n_time))),
                         subject = subject, stringsAsFactors = FALSE),
       b = B)
}

simA <- sim_structured(60, 6, rho = 0.6, sd = 1.0, beta = c(1, 0.5), gaussian = TRUE)
simB <- sim_structured(80, 5, rho = 0.5, sd = 0.5, beta = c(0.5, 0.3), gaussian = FALSE)
A <- simA$data; B <- simB$data
A$subject <- factor(A$subject); B$subject <- factor(B$subject)   # levels s01.. in sorted (= numeric) order

csvA <- file.path(OUT, "structured_gauss.csv"); csvB <- file.path(OUT, "structured_counts.csv")
write_csv_exact(A, csvA); write_csv_exact(B, csvB)
cat("wrote", csvA, "(", nrow(A), "rows ) and", csvB, "(", nrow(B), "rows ); read-back exact\n")

## The fits below use the data re-read from the CSVs (identical values; checked).
readA <- function(path) {
  d <- read.csv(path, colClasses = c(y = "character", x = "character", time = "integer", times = "character",
                                     subject = "character"))
  d$y <- parse_exact(d$y); d$x <- parse_exact(d$x)
  d$times <- factor(d$times, levels = as.character(sort(unique(d$time))))
  d$subject <- factor(d$subject)
  d
}
A2 <- readA(csvA); B2 <- readA(csvB); B2$y <- as.integer(B2$y)
stopifnot(isTRUE(all.equal(A2, A, tolerance = 0)), identical(A2$x, A$x), identical(A2$y, A$y),
          identical(B2$x, B$x), identical(B2$y, B$y), identical(levels(A2$times), levels(A$times)))
A <- A2; B <- B2

SIM_CODE <- paste(
  "set.seed(20261204); default RNG kinds. Data A: n_subj = 60, n_time = 6, rho = 0.6, sd = 1.0, beta = (1, 0.5);",
  "then Data B: n_subj = 80, n_time = 5, rho = 0.5, sd = 0.5, beta = (0.5, 0.3). For each, in this order:",
  "x = rnorm(n); Z = matrix(rnorm(n), n_subj, n_time, byrow = TRUE); R = chol(sd^2 * rho^|i - j|) (upper);",
  "B = Z %*% R (row s = b[s, 1..n_time]); eta = beta0 + beta1 x + b[subject, time];",
  "A: y = eta + rnorm(n, 0, 0.5); B: y = rpois(n, exp(eta)). Rows subject-major, time 1..n_time within subject;",
  "subject = sprintf('s%02d', i); times = factor(time) with levels '1'..'n_time'.")

## ---------------------------------------------------------------- structure helpers

PARAM_NOTES <- list(
  source = paste("glmmTMB's src/glmmTMB.cpp (termwise_nll; read in the GitHub source) and TMB 1.9.2's",
                 "density::UNSTRUCTURED_CORR_t (include/tmbutils/density.hpp); the covstruct vignette gives only",
                 "the parameter counts. Each map below is checked numerically against the installed glmmTMB",
                 "1.1.5's VarCorr in every case (theta_check, differences <= 1.1e-16; us only for n = 2)."),
  theta = paste("theta = getME(fit, 'theta') = fit$fit$par[names == 'theta'], concatenated over random-effect",
                "terms; within a term of dimension n (n = number of columns of the term's model matrix):"),
  diag = "diag: theta = log(sd_1), ..., log(sd_n) (n parameters); corr = identity.",
  us = paste("us: theta = (log sd_1..n, c_1..c_{n(n-1)/2}); L = unit lower-triangular with the c's filled ROW by",
             "row below the diagonal (L[2,1], L[3,1], L[3,2], ...); corr = D^-1/2 L L' D^-1/2 with D = diag(L L').",
             "For n = 2: corr = c / sqrt(1 + c^2)."),
  cs = paste("cs: HETEROGENEOUS variances, one common correlation: theta = (log sd_1..n, t); a = 1 / (n - 1);",
             "rho = plogis(t) * (1 + a) - a, so rho in (-1/(n-1), 1); n + 1 parameters."),
  ar1 = paste("ar1: ONE sd for all times: theta = (log sd, phi); rho = phi / sqrt(1 + phi^2); corr[i, j] =",
              "rho^|i - j| (unit-spaced factor levels; the level order, not their values, is used); 2 parameters."),
  toep = paste("toep: theta = (log sd_1..n, p_1..p_{n-1}); r_k = p_k / sqrt(1 + p_k^2); corr[i, j] = r_|i-j|;",
               "2n - 1 parameters (corr is not guaranteed positive definite by this map)."),
  sigma = paste("gaussian: betad = fit$fit$par['betad'] (dispformula ~1) is log(sigma^2): sigma(fit) =",
                "exp(betad / 2) in glmmTMB 1.1.5 (sigma.glmmTMB; checked per case: sigma_check)."),
  REML = paste("REML = TRUE: glmmTMB integrates the fixed effects out with the random effects (Laplace, exact",
               "for gaussian), so fit$fit$par holds only theta and betad; fixef(fit) are the conditional modes",
               "(GLS estimates), se from vcov(fit). logLik is the restricted log-likelihood; its df",
               "(attr(logLik, 'df')) counts the fixed effects too, as lme4 does."))

## sd and correlation matrix of one term from its theta, following PARAM_NOTES.
theta_to_vc <- function(code, th, n) {
  name <- BLOCK_NAMES[[as.character(code)]]
  rho <- NULL
  if (name == "diag") { sd <- exp(th); corr <- diag(n) }
  else if (name == "us") {
    sd <- exp(th[seq_len(n)]); L <- diag(n); k <- n
    for (i in seq_len(n)) for (j in seq_len(n)) if (i > j) { k <- k + 1; L[i, j] <- th[k] }
    corr <- cov2cor(L %*% t(L))
  } else if (name == "cs") {
    sd <- exp(th[seq_len(n)]); a <- 1 / (n - 1); rho <- plogis(th[n + 1]) * (1 + a) - a
    corr <- matrix(rho, n, n); diag(corr) <- 1
  } else if (name == "ar1") {
    sd <- rep(exp(th[1]), n); rho <- th[2] / sqrt(1 + th[2]^2)
    corr <- rho^abs(outer(seq_len(n), seq_len(n), "-"))
  } else if (name == "toep") {
    sd <- exp(th[seq_len(n)]); p <- th[n + seq_len(n - 1)]; r <- p / sqrt(1 + p^2)
    corr <- diag(n); for (i in seq_len(n)) for (j in seq_len(n)) if (i != j) corr[i, j] <- r[abs(i - j)]
  } else stop("structure not handled: ", name)
  list(structure = name, sd = sd, corr = corr, rho = rho)
}

## VarCorr of the conditional model, per term, with the structure's own rho and theta.
tmb_varcorr <- function(m, th) {
  vc <- VarCorr(m)$cond
  reS <- m$modelInfo$reStruc$condReStruc
  out <- list(); pos <- 0; maxdiff <- 0
  for (i in seq_along(vc)) {
    S <- vc[[i]]; code <- reS[[i]]$blockCode; n <- reS[[i]]$blockSize; nt <- reS[[i]]$blockNumTheta
    thi <- th[pos + seq_len(nt)]; pos <- pos + nt
    rec <- theta_to_vc(code, thi, n)
    sd <- attr(S, "stddev"); corr <- attr(S, "correlation"); if (is.null(corr)) corr <- diag(n)
    d <- max(abs(rec$sd - sd), abs(rec$corr - as.matrix(corr)))
    maxdiff <- max(maxdiff, d)
    offd <- as.matrix(corr)[row(corr) != col(corr)]
    out[[i]] <- list(
      group = names(vc)[i], term = names(reS)[i], structure = rec$structure, blockCode = code,
      blockSize = n, blockReps = reS[[i]]$blockReps, n_theta = nt,
      terms = arr(colnames(S)), sd = arr(sd), var = arr(sd^2), corr = mat(corr), cov = mat(S),
      rho = if (is.null(rec$rho)) NULL else rec$rho,
      offdiag_corr_range = if (length(offd)) arr(range(offd)) else NULL,
      theta = arr(thi),
      theta_check = list(sd = arr(rec$sd), corr = mat(rec$corr),
                         max_abs_diff_vs_VarCorr = d))
  }
  stopifnot(pos == length(th))
  list(terms = out, theta_check_max_abs_diff = maxdiff)
}

## Newton polish (reference_helpers.R) with sd / rho / corr of each term from the polished theta.
## Run AFTER everything else has been extracted from m (it moves m$obj's internal state).
polish_terms <- function(th, reS) {
  terms <- list(); pos <- 0
  for (i in seq_along(reS)) {
    nt <- reS[[i]]$blockNumTheta
    rec <- theta_to_vc(reS[[i]]$blockCode, th[pos + seq_len(nt)], reS[[i]]$blockSize); pos <- pos + nt
    terms[[i]] <- list(term = names(reS)[i], structure = rec$structure, sd = arr(rec$sd),
                       rho = if (is.null(rec$rho)) NULL else rec$rho, corr = mat(rec$corr))
  }
  terms
}
polish <- function(m) newton_polish(m, polish_terms, "sd / rho / corr from theta by the PARAM_NOTES maps;")

## Gaussian only: GLS fixed effects and their "naive" covariance (X' V^-1 X)^-1 at the fitted covariance
## parameters, V = Z Cov(b) Z' + sigma^2 I, Cov(b) = blockdiag over terms of kronecker(I_reps, Sigma_term)
## (glmmTMB orders b term by term, group by group, the term's columns within a group). This is what lme4's
## vcov gives; glmmTMB's vcov differs (see gls.note).
gls_check <- function(m) tmb_gls(m, tmb_cov_b(m), loglik = FALSE,
  note = paste("GLS at the fitted covariance parameters: se = sqrt(diag((X' V^-1 X)^-1)), the lme4-style",
               "fixed-effect se. fixef.se = glmmTMB's vcov(fit): from TMB's sdreport, for REML with the fixed",
               "effects as random effects (includes the covariance parameters' uncertainty), for ML from the",
               "joint Hessian; the two differ by 5e-5 .. 1.4e-3 here."))

## tmb_block: reference_helpers.R

lmer_block <- function(call_text) {
  cap <- capture(eval(parse(text = call_text), envir = globalenv()))
  f <- cap$value
  ll <- logLik(f)
  vc <- VarCorr(f)
  V <- as.matrix(vcov(f))
  terms <- lapply(names(vc), function(g) {
    S <- vc[[g]]; corr <- attr(S, "correlation"); if (is.null(corr)) corr <- diag(nrow(S))
    list(group = g, terms = arr(colnames(S)), sd = arr(attr(S, "stddev")), corr = mat(corr), cov = mat(S))
  })
  th <- getME(f, "theta")
  list(r_call = call_text, REML = isREML(f),
       logLik = as.numeric(ll), df = attr(ll, "df"), AIC = AIC(f), REMLcrit = if (isREML(f)) REMLcrit(f) else NULL,
       fixef = list(names = arr(names(fixef(f))), estimate = arr(fixef(f)), se = arr(sqrt(diag(V)))),
       sigma = sigma(f), varcorr = terms,
       theta = list(names = arr(names(th)), values = arr(th),
                    note = "lme4's theta: the relative covariance factor (Cholesky of Sigma / sigma^2), not glmmTMB's"),
       isSingular = isSingular(f),
       convergence_messages = arr(f@optinfo$conv$lme4$messages), optimizer_warnings = arr(f@optinfo$warnings),
       fit_warnings = arr(cap$warnings), fit_messages = arr(cap$messages))
}

## ---------------------------------------------------------------- cases

cases <- list(); failures <- list(); rows <- list()

run_case <- function(case_id, call_text, data_id, notes = NULL, lmer_call = NULL, only_if_clean = FALSE) {
  res <- tryCatch({
    f <- fit_with_refit(call_text)
    m <- f$m; cap <- f$cap; used_call <- f$used_call; control_used <- f$control_used; default_warn <- f$default_warn
    blk <- tmb_block(m, cap, used_call)
    usable <- !(only_if_clean && length(cap$warnings) > 0)
    lm <- if (!is.null(lmer_call)) lmer_block(lmer_call) else NULL
    cmp <- NULL
    if (!is.null(lm)) {
      sd_t <- unlist(lapply(blk$varcorr, `[[`, "sd")); sd_l <- unlist(lapply(lm$varcorr, `[[`, "sd"))
      cmp <- list(logLik_glmmTMB_minus_lmer = blk$logLik - lm$logLik,
                  df_glmmTMB = blk$df, df_lmer = lm$df,
                  max_abs_diff_fixef = max(abs(unlist(blk$fixef$estimate) - unlist(lm$fixef$estimate))),
                  max_abs_diff_se = max(abs(unlist(blk$fixef$se) - unlist(lm$fixef$se))),
                  max_abs_diff_gls_se = max(abs(unlist(blk$gls$se) - unlist(lm$fixef$se))),
                  max_abs_diff_sd = if (length(sd_t) == length(sd_l)) max(abs(sd_t - sd_l)) else NULL,
                  abs_diff_sigma = abs(blk$sigma - lm$sigma))
    }
    pol <- try_polish(polish, m)
    cases[[case_id]] <<- list(
      case_id = case_id, data = data_id, data_file = c(A = "structured_gauss.csv", B = "structured_counts.csv")[[data_id]],
      r_call = used_call, control_used = control_used, default_fit = default_warn,
      usable = usable, notes = notes,
      results = blk, lmer = lm, glmmTMB_vs_lmer = cmp, newton_polish = pol)
    vc1 <- blk$varcorr[[1]]
    rows[[case_id]] <<- tmb_summary_row(
      case_id, control_used, usable, blk, pol, cap, list(default = default_warn),
      AIC = blk$AIC, rho = or_na(vc1$rho), sd = paste(sprintf("%.6f", unlist(vc1$sd)), collapse = " "),
      lmer_logLik = or_na(lm$logLik))
    "ok"
  }, error = function(e) { failures[[case_id]] <<- conditionMessage(e); paste("FAILED:", conditionMessage(e)) })
  cat(sprintf("%-14s %s\n", case_id, res))
}

run_case("ar1_reml", "glmmTMB(y ~ x + ar1(times + 0 | subject), data = A, REML = TRUE)", "A",
         notes = "true values: rho 0.6, sd 1.0, sigma 0.5, beta (1, 0.5)")
run_case("ar1_ml", "glmmTMB(y ~ x + ar1(times + 0 | subject), data = A, REML = FALSE)", "A",
         notes = "true values: rho 0.6, sd 1.0, sigma 0.5, beta (1, 0.5)")
run_case("cs_reml", "glmmTMB(y ~ x + cs(times + 0 | subject), data = A, REML = TRUE)", "A",
         notes = paste("glmmTMB's cs: heterogeneous SDs (one per time, varcorr.sd) and ONE common correlation",
                       "(varcorr.rho; every off-diagonal of varcorr.corr equals it: offdiag_corr_range).",
                       "Misspecified here: the data are AR(1). BOUNDARY: the residual SD goes to 0 (sigma 4.7e-4,",
                       "betad -15.3, not determined: the Newton polish moves it by 1.5e-3 for a logLik gain of 2e-8);",
                       "the cs block absorbs the residual variance. logLik, fixef, the SDs and rho are well defined",
                       "(the polish moves them by < 1e-6); compare sigma only as ~0."))
run_case("diag_reml", "glmmTMB(y ~ x + diag(1 + x | subject), data = A, REML = TRUE)", "A",
         lmer_call = "lmer(y ~ x + (1 + x || subject), data = A, REML = TRUE)",
         notes = paste("independent random intercept and x-slope per subject (misspecified: the data have no",
                       "random slope); lmer's || fit of the same model in `lmer`, differences in glmmTMB_vs_lmer.",
                       "BOUNDARY: the slope SD goes to 0 (glmmTMB 3.1e-5, theta -10.4; lmer exactly 0, singular",
                       "fit message); logLik agrees to 4e-8, fixef to 2e-10, sigma to 5e-10."))
run_case("us_reml", "glmmTMB(y ~ x + us(1 + x | subject), data = A, REML = TRUE)", "A",
         lmer_call = "lmer(y ~ x + (1 + x | subject), data = A, REML = TRUE)",
         notes = paste("correlated random intercept and x-slope; the same model by lmer in `lmer`.",
                       "BOUNDARY: the intercept-slope correlation goes to -1 (glmmTMB -0.99998, its theta -153 and",
                       "still drifting; lmer -1 exactly, singular fit message); the default fit warns 'singular",
                       "convergence (7)' and so does the refit. logLik (glmmTMB 1.6e-6 below lmer), fixef (1e-7),",
                       "the two SDs (4e-6) and sigma (1.2e-6) agree; compare the correlation only as ~ -1."))
run_case("ar1_poisson", "glmmTMB(y ~ x + ar1(times + 0 | subject), family = poisson, data = B)", "B",
         notes = "Laplace ML; true values: rho 0.5, sd 0.5, beta (0.5, 0.3)")
run_case("cs_poisson", "glmmTMB(y ~ x + cs(times + 0 | subject), family = poisson, data = B)", "B",
         notes = "Laplace ML; heterogeneous SDs, one common correlation (misspecified: the data are AR(1)).")
run_case("toep_reml", "glmmTMB(y ~ x + toep(times + 0 | subject), data = A, REML = TRUE)", "A",
         only_if_clean = TRUE,
         notes = paste("heterogeneous Toeplitz: one SD per time and one correlation per lag (varcorr.corr is",
                       "constant along diagonals). NOT CLEAN (usable = false): both the default fit and the refit warn",
                       "'NA/NaN function evaluation' (nlminb tried a point where the objective is NaN) although they",
                       "end with relative convergence (4) and pdHess TRUE, and the residual SD goes to 0 (sigma",
                       "4.5e-4, betad -15.4, undetermined) as in cs_reml. Recorded for information only."))

## ---------------------------------------------------------------- JSON

data_info <- function(d, file, sim) list(
  file = file, nrow = nrow(d), columns = arr(names(d)),
  n_subjects = nlevels(d$subject), n_times = nlevels(d$times),
  factor_levels = list(times = arr(levels(d$times)), subject = arr(levels(d$subject))),
  true_b = list(note = "the simulated b[subject, time] (rows = subjects in level order, columns = times)",
                values = mat(sim$b)))

top <- list(
  description = paste("glmmTMB reference fits with structured random-effect covariances (ar1, cs, diag, us, toep)",
                      "on simulated data; lme4 comparisons for diag and us."),
  script = "tests/data/r/structured_references.R", versions = versions,
  simulation = SIM_CODE,
  data = list(A = c(data_info(A, "structured_gauss.csv", simA),
                    list(truth = list(beta = arr(c(1, 0.5)), rho = 0.6, sd = 1.0, sigma = 0.5, family = "gaussian"))),
              B = c(data_info(B, "structured_counts.csv", simB),
                    list(truth = list(beta = arr(c(0.5, 0.3)), rho = 0.5, sd = 0.5, family = "poisson")))),
  control_rule = paste("default glmmTMB control; a case whose default fit warns is refitted with control =",
                       REFIT_CONTROL, "(control_used; the default fit's warnings in default_fit)."),
  parameterisation = PARAM_NOTES,
  cases = cases)
## written, then read back: valid JSON, numbers exact
back <- write_json_read_back(top, failures, file.path(OUT, "structured_references.json"), show_size = FALSE)
stopifnot(tmb_read_back_ok(back, cases))

## ---------------------------------------------------------------- summary

tab <- summary_table(rows)
print(tab[, c("case_id", "control", "usable", "logLik", "df", "AIC", "sigma", "rho", "conv", "pdHess", "grad",
              "theta_chk", "polish_dll", "polish_dpar", "lmer_logLik")], row.names = FALSE)
cat("\nSDs and fixef (se):\n")
for (i in seq_len(nrow(tab))) cat(sprintf("  %-12s sd: %s\n  %-12s fixef: %s\n", tab$case_id[i], tab$sd[i], "", tab$fixef[i]))
print_warnings(tab, 12)
for (cid in c("diag_reml", "us_reml")) if (!is.null(cases[[cid]]$glmmTMB_vs_lmer)) {
  cat("\n", cid, "glmmTMB vs lmer:\n"); str(cases[[cid]]$glmmTMB_vs_lmer)
}
report_failures(failures)
