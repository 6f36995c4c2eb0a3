## lme4 reference fits for a random intercept with a KNOWN correlation matrix between the levels of its grouping
## factor (a phylogeny's or a pedigree's: brms's `(1 | gr(species, cov = A))`, lme4qtl's `relmatLmer`, MCMCglmm's
## ginverse), on simulated data.
##
## Run from the repository root:   Rscript tests/data/r/known_cov_references.R
## Writes tests/data/known_cov_sim.csv (the data), tests/data/known_cov_A.csv (the known correlation matrix A; doubles
## as the shortest round-trip decimals, read back equal) and tests/data/known_cov_references.json (all cases), and
## prints a summary. About 3 s. Reruns are byte-identical (see Reproducibility).
##
## Model: y = X beta + Z b + e, b ~ N(0, sigma_b^2 A), e ~ N(0, sigma^2) (gaussian); log mu = X beta + Z b (poisson),
## with A (q x q, q = 30 species) known and positive definite. As lme4qtl does it with lme4's modular functions:
## A = L L' (L = t(chol(A)), lower triangular), b = L u, u ~ N(0, sigma_b^2 I), so the model is an ordinary random
## intercept u per species with the design Z L in place of Z: the term's Zt (and Ztlist) from lFormula / glFormula
## is replaced by t(Z %*% L) (Z the n x q indicator matrix of species in level order), then the rest is lmer's /
## glmer's own code, step by step (see fit_known_lmer / fit_known_glmer below, and modular_lmer / modular_glmer in
## tests/data/r/reference_helpers.R: the same calls and controls as lme4 1.1-31's lmer() / glmer() bodies). theta
## is then sigma_b / sigma (gaussian) or sigma_b (poisson); ranef() returns u; the BLUPs on the b scale are
## b = L %*% u.
##
## Cases:
##   gaussian_reml            y ~ x + (1 | species), REML, A known
##   gaussian_ml              the same, ML
##   poisson_laplace          count ~ x + (1 | species), poisson, Laplace (glmer's two stages), A known
##   gaussian_identity_check  gaussian_reml's machinery with A = I, against lmer(y ~ x + (1 | species), REML = TRUE)
##   poisson_identity_check   poisson_laplace's machinery with A = I, against glmer(count ~ x + (1 | species), ...)
## Gaussian cases also carry `direct`: the log-likelihood, GLS fixed effects and se, and the BLUPs recomputed from the
## marginal MVN, V = sigma_b^2 Z A Z' + sigma^2 I, at the fitted (sigma_b, sigma), plus a re-maximisation of that
## direct likelihood by optim (an independent check of the optimum). The poisson case carries `direct`: the Laplace
## log-likelihood recomputed at the fitted (sigma_b, beta) by a Newton iteration independent of lme4 for the mode of b
## (poisson_laplace_direct in reference_helpers.R).
##
## Tolerances: gaussian lmerControl(optCtrl = list(xtol_abs = 1e-12, ftol_abs = 1e-14, xtol_rel = 1e-12, ftol_rel =
## 1e-14)) (nloptwrap, the repository's tight lme4 setting); poisson glmerControl(tolPwrss = 1e-13, optCtrl =
## list(xt = rep(1e-10, 3), FtolAbs = 1e-14, maxfun = 1e5)) as in smooth_references.R: glmer passes optCtrl to both
## stages, stage 1 (minqa bobyqa, theta only, nAGQ = 0) warns "unused control arguments ignored" (xt, FtolAbs are not
## bobyqa controls; stage 1 only supplies the start of stage 2), stage 2 (lme4's Nelder_Mead, theta and beta) stops on
## its absolute parameter tolerance xt (one entry per parameter: 1 theta + 2 beta). tolPwrss = 1e-13 removes the PIRLS
## bias of glmer's Laplace objective (see tests/data/r/lme4_tighter.R).
##
## Reproducibility: reruns are byte-identical (CSVs and JSON), also with address-space layout randomisation (ASLR)
## on: 12 runs with ASLR on and one under `setarch -R` (ASLR off) gave the same bytes, so, unlike
## tests/data/r/smooth_references.R (whose lme4 objective moved in its last bit with ASLR), this script does not
## re-run itself under `setarch -R`.
##
## Number formatting, CSV writer and JSON conventions are in tests/data/r/reference_helpers.R, and so are the parts
## shared with mm_references.R: the modular lmer / glmer bodies and their R calls, the lme4 parts of a fit's summary
## and the direct Laplace log-likelihood.
##
## Tested with R 4.2.2, lme4 1.1-31, Matrix 1.5-3, minqa 1.2.5, nloptr 2.0.3, jsonlite 1.8.4 (Debian bookworm
## packages).

source(file.path("tests", "data", "r", "reference_helpers.R"))   # arr, mat, named, capture, parse_exact, fmt_num,
                                                                 # write_csv_exact, lme4 helpers
OUT <- start_script(c("lme4", "jsonlite"))   # lme4 attaches Matrix; OUT = tests/data

versions <- lme4_versions()

## ---------------------------------------------------------------- data

set.seed(20261205)   # default RNG kinds (Mersenne-Twister, Inversion, Rejection)
q <- 30; n_per <- 10; n <- q * n_per
SPECIES <- sprintf("sp%02d", seq_len(q))
pts <- sort(runif(q, 0, 2))                               # species "positions" on [0, 2]
Dist <- abs(outer(pts, pts, "-"))
A0 <- exp(-Dist / 0.5) + diag(1e-8, q)                    # exponential (OU) kernel, + 1e-8 on the diagonal
A_sim <- cov2cor(A0)                                      # unit diagonal (exactly 1)
dimnames(A_sim) <- list(SPECIES, SPECIES)
stopifnot(identical(A_sim, t(A_sim)), all(diag(A_sim) == 1))
L_sim <- t(chol(A_sim))                                   # lower triangular, A = L L'
sp_idx <- rep(seq_len(q), each = n_per)                   # rows species-major, 10 per species
x <- rnorm(n)
u_true <- rnorm(q)
b_true <- as.vector(0.8 * L_sim %*% u_true)               # b ~ N(0, 0.8^2 A), species sp01..sp30
y <- 1 + 0.5 * x + b_true[sp_idx] + rnorm(n, 0, 0.6)
count <- rpois(n, exp(0.2 + 0.3 * x + b_true[sp_idx] * 0.7))
D0 <- data.frame(y = y, count = count, x = x, species = SPECIES[sp_idx], stringsAsFactors = FALSE)
A_df <- data.frame(species = SPECIES, A_sim, check.names = FALSE, stringsAsFactors = FALSE)
stopifnot(identical(names(A_df), c("species", SPECIES)))

csv_path <- file.path(OUT, "known_cov_sim.csv")
write_csv_exact(D0, csv_path)
cat("wrote", csv_path, "(", nrow(D0), "rows ); read-back exact\n")
a_path <- file.path(OUT, "known_cov_A.csv")
write_csv_exact(A_df, a_path)
cat("wrote", a_path, "(", nrow(A_df), "x", ncol(A_df) - 1, "); read-back exact\n")

## The fits use the data and A re-read from the CSVs (identical values; checked), species as a factor (sorted levels
## = sp01..sp30, the order of A's rows and columns).
d <- read.csv(csv_path, colClasses = c(y = "character", count = "integer", x = "character", species = "character"))
d$y <- parse_exact(d$y); d$x <- parse_exact(d$x)
stopifnot(identical(d$y, D0$y), identical(d$count, D0$count), identical(d$x, D0$x), identical(d$species, D0$species))
d$species <- factor(d$species)
stopifnot(identical(levels(d$species), SPECIES))
Ab <- read.csv(a_path, colClasses = "character", check.names = FALSE)
stopifnot(identical(names(Ab), c("species", SPECIES)), identical(Ab$species, SPECIES))
A <- matrix(parse_exact(unlist(Ab[, -1], use.names = FALSE)), q, q, dimnames = list(Ab$species, names(Ab)[-1]))
stopifnot(identical(A, A_sim))
L <- t(chol(A))
stopifnot(identical(L, L_sim))

SIM_CODE <- paste(
  "set.seed(20261205); default RNG kinds. q = 30; species = sprintf('sp%02d', 1:30); pts = sort(runif(q, 0, 2));",
  "D = abs(outer(pts, pts, '-')); A = cov2cor(exp(-D / 0.5) + diag(1e-8, q)) (dimnames species); L = t(chol(A));",
  "n = 300, rows species-major (sp = rep(1:30, each = 10)); x = rnorm(n); b = as.vector(0.8 * L %*% rnorm(q));",
  "y = 1 + 0.5 * x + b[sp] + rnorm(n, 0, 0.6); count = rpois(n, exp(0.2 + 0.3 * x + b[sp] * 0.7)).",
  "known_cov_sim.csv: columns y, count, x, species; known_cov_A.csv: column species, then one column per",
  "species (A's rows in level order).")
DATA_PREP <- paste(
  "d <- read.csv('tests/data/known_cov_sim.csv'); d$species <- factor(d$species) (levels sp01..sp30);",
  "Ad <- read.csv('tests/data/known_cov_A.csv', check.names = FALSE); A <- as.matrix(Ad[, -1]);",
  "dimnames(A) <- list(Ad$species, Ad$species); L <- t(chol(A)) (the script parses the doubles with a correctly",
  "rounded parser; identical values)")

## ---------------------------------------------------------------- the modular fits (lme4qtl's construction)

TIGHT_LMER_TEXT <- "lmerControl(optCtrl = list(xtol_abs = 1e-12, ftol_abs = 1e-14, xtol_rel = 1e-12, ftol_rel = 1e-14))"
TIGHT_GLMER_TEXT <- "glmerControl(tolPwrss = 1e-13, optCtrl = list(xt = rep(1e-10, 3), FtolAbs = 1e-14, maxfun = 1e5))"
TIGHT_LMER <- eval(parse(text = TIGHT_LMER_TEXT))
TIGHT_GLMER <- eval(parse(text = TIGHT_GLMER_TEXT))

## Z (n x q indicator, columns in level order) and the replaced Zt = t(Z %*% Lk), as a dgCMatrix (exact zeros of
## Z %*% Lk dropped; merPredD needs a dgCMatrix).
Z_ind <- Matrix::t(Matrix::fac2sparse(d$species))
stopifnot(identical(colnames(Z_ind), SPECIES))
known_zt <- function(Lk) {
  Zt <- as(Matrix::t(Z_ind %*% Lk), "CsparseMatrix")
  dimnames(Zt) <- list(SPECIES, NULL)
  Zt
}
replace_zt <- function(mod, Lk) {
  stopifnot(length(mod$reTrms$Ztlist) == 1, identical(rownames(mod$reTrms$Zt), SPECIES),
            max(abs(as.matrix(mod$reTrms$Zt) - as.matrix(Matrix::t(Z_ind)))) == 0)
  Zt <- known_zt(Lk)
  mod$reTrms$Zt <- Zt
  mod$reTrms$Ztlist[[1]] <- Zt
  mod
}

## The exact R calls (lmer()'s / glmer()'s body in lme4 1.1-31, MODULAR_*_CALLS in reference_helpers.R, with the Zt
## replacement inserted); lname: "L" or "diag(30)".
ZT_CALLS <- function(obj, lname) c(
  "Z <- Matrix::t(Matrix::fac2sparse(d$species))   # n x q indicator, columns in level order",
  sprintf("Zt <- as(Matrix::t(Z %%*%% %s), \"CsparseMatrix\"); %s$reTrms$Zt <- Zt; %s$reTrms$Ztlist[[1]] <- Zt",
          lname, obj, obj))
B_CALL <- function(lname) sprintf("b <- as.vector(%s %%*%% ranef(fit)$species[[1]])   # BLUPs on the b scale", lname)
LMER_CALLS <- function(reml, lname) c(
  sprintf("ctrl <- %s", TIGHT_LMER_TEXT),
  sprintf("lmod <- lFormula(y ~ x + (1 | species), data = d, REML = %s, control = ctrl)", reml),
  ZT_CALLS("lmod", lname), MODULAR_LMER_CALLS, B_CALL(lname))
GLMER_CALLS <- function(lname) c(
  sprintf("ctrl <- %s", TIGHT_GLMER_TEXT),
  "glmod <- glFormula(count ~ x + (1 | species), data = d, family = poisson, control = ctrl)",
  ZT_CALLS("glmod", lname), MODULAR_GLMER_CALLS, B_CALL(lname))

## Lk = L or diag(q)
fit_known_lmer <- function(Lk, REML) {
  lmod <- lFormula(y ~ x + (1 | species), data = d, REML = REML, control = TIGHT_LMER)
  modular_lmer(replace_zt(lmod, Lk), TIGHT_LMER)
}
fit_known_glmer <- function(Lk) {
  glmod <- glFormula(count ~ x + (1 | species), data = d, family = poisson, control = TIGHT_GLMER)
  modular_glmer(replace_zt(glmod, Lk), TIGHT_GLMER)
}

## ---------------------------------------------------------------- fit summaries

## The fit's summary (the lme4 parts from reference_helpers.R): calls, criteria, sigma_b, theta, fixef, the BLUPs on
## both scales, fitted values, optinfo.
fit_block <- function(fit, cap, Lk, calls) {
  gauss <- family(fit)$family == "gaussian"
  th <- getME(fit, "theta")
  s <- if (gauss) sigma(fit) else NULL
  sb <- if (gauss) unname(th) * s else unname(th)
  u <- ranef(fit)$species
  stopifnot(identical(rownames(u), SPECIES))
  u <- u[[1]]
  b <- as.vector(Lk %*% u)
  eta <- as.vector(getME(fit, "X") %*% fixef(fit) + Z_ind %*% b)
  c(lme4_calls_part(fit, cap, calls),
    list(nobs = nobs(fit), ngrps = as.numeric(ngrps(fit))),
    lme4_criteria(fit),
    list(sigma = s, sigma_b = sb, sigma_b_sq = sb^2),
    lme4_coef_part(fit),
    list(blups = list(levels = arr(SPECIES), b = arr(b), u = arr(u),
                      note = paste("u = ranef(fit)$species (the modes of the transformed intercepts, u ~ N(0,",
                                   "sigma_b^2 I)); b = L %*% u, the BLUPs / conditional modes of the species effects",
                                   "(b ~ N(0, sigma_b^2 A)), in level order sp01..sp30"))),
    lme4_fitted_part(fit, eta, paste("= X fixef + Z b; fitted_check_max_abs_diff: against that recomputed from",
                                     "fixef and b here")),
    list(optinfo = lme4_optinfo(fit, lme4_messages = TRUE)),
    lme4_fixef_se_notes(fit))
}

## Gaussian: the marginal MVN at the fitted (sigma_b, sigma): V = sigma_b^2 Z A_k Z' + sigma^2 I. GLS beta and se,
## ML / REML log-likelihood, BLUPs b = sigma_b^2 A_k Z' V^-1 (y - X beta); then optim (BFGS on log sigma_b, log
## sigma) of that direct log-likelihood from the fit, as an independent check of the optimum.
direct_gaussian <- function(fit, Ak) {
  X <- getME(fit, "X"); Z <- as.matrix(Z_ind); yy <- d$y; reml <- isREML(fit)
  ZAZ <- Z %*% Ak %*% t(Z)
  ll_fun <- function(sb, s) {
    V <- sb^2 * ZAZ + s^2 * diag(n)
    cV <- chol(V)
    ViX <- chol2inv(cV) %*% X
    XtViX <- crossprod(X, ViX)
    bh <- solve(XtViX, crossprod(ViX, yy))
    r <- yy - X %*% bh
    ll_ml <- -0.5 * (n * log(2 * pi) + 2 * sum(log(diag(cV))) + sum(backsolve(cV, r, transpose = TRUE)^2))
    ll <- if (reml) ll_ml - 0.5 * as.numeric(determinant(XtViX)$modulus) + 0.5 * ncol(X) * log(2 * pi) else ll_ml
    list(ll = ll, beta = as.vector(bh), Vb = solve(XtViX),
         b = as.vector(sb^2 * Ak %*% t(Z) %*% chol2inv(cV) %*% r))
  }
  s <- sigma(fit); sb <- unname(getME(fit, "theta")) * s
  at <- ll_fun(sb, s)
  u <- ranef(fit)$species[[1]]
  Lk <- t(chol(Ak))
  opt <- optim(log(c(sb, s)), function(p) -ll_fun(exp(p[1]), exp(p[2]))$ll, method = "BFGS",
               control = list(reltol = 1e-15, maxit = 1000))
  list(
    note = paste("Recomputed from the marginal MVN, V = sigma_b^2 Z A Z' + sigma^2 I, at the fit's sigma_b and sigma:",
                 if (reml) "REML: log N(y; X beta_gls, V) - 1/2 log|X'V^-1X| + (p/2) log(2 pi);" else
                   "ML: log N(y; X beta_gls, V);",
                 "beta_gls, se = sqrt(diag((X'V^-1X)^-1)), b = sigma_b^2 A Z' V^-1 (y - X beta_gls). optim:",
                 "BFGS on (log sigma_b, log sigma) of that direct log-likelihood, started at the fit",
                 "(reltol 1e-15): the gain and the parameter moves measure how far lme4's optimum is from the",
                 "direct maximum."),
    logLik = at$ll, logLik_minus_lme4 = at$ll - as.numeric(logLik(fit)),
    fixef = arr(at$beta), fixef_max_abs_diff = max(abs(at$beta - fixef(fit))),
    fixef_se = arr(sqrt(diag(at$Vb))),
    fixef_se_max_abs_diff = max(abs(sqrt(diag(at$Vb)) - sqrt(diag(as.matrix(vcov(fit)))))),
    blups_max_abs_diff = max(abs(at$b - as.vector(Lk %*% u))),
    optim = list(convergence = opt$convergence, logLik = -opt$value,
                 logLik_gain_vs_lme4 = -opt$value - as.numeric(logLik(fit)),
                 sigma_b = exp(opt$par[1]), sigma = exp(opt$par[2]),
                 sigma_b_rel_diff = exp(opt$par[1]) / sb - 1, sigma_rel_diff = exp(opt$par[2]) / s - 1))
}

## Poisson: the Laplace log-likelihood at the fit's (theta = sigma_b, beta), recomputed here: the mode u_hat of
## sum(dpois(y, exp(X beta + Z theta L u), log = TRUE)) - u'u / 2 by Newton, then
## logLik = sum(dpois(y, mu_hat, log = TRUE)) - u_hat'u_hat / 2 - 1/2 log|I + theta^2 L'Z' W Z L|, W = diag(mu_hat).
direct_poisson <- function(fit, Lk) {
  th <- unname(getME(fit, "theta"))
  lap <- poisson_laplace_direct(d$count, as.vector(getME(fit, "X") %*% unname(fixef(fit))), th * as.matrix(Z_ind) %*% Lk)
  ll <- lap$logLik
  u_fit <- ranef(fit)$species[[1]]
  list(
    note = paste("The Laplace log-likelihood at the fit's theta (= sigma_b) and beta, recomputed here: u_hat =",
                 "the mode of sum(dpois(y, exp(X beta + theta Z L u), log = TRUE)) - u'u/2 (Newton, steps to",
                 "< 1e-14), logLik = sum(dpois(y, mu_hat, log = TRUE)) - u_hat'u_hat/2 - 1/2 log|I + theta^2 L'Z'",
                 "diag(mu_hat) Z L|. b_hat = theta L u_hat is the same as the BLUPs (lme4's u is theta u_hat)."),
    newton_iterations = lap$iterations,
    logLik = ll, logLik_minus_lme4 = ll - as.numeric(logLik(fit)),
    blups_max_abs_diff = max(abs(th * as.vector(Lk %*% lap$u) - as.vector(Lk %*% u_fit))),
    mu_max_abs_diff = max(abs(lap$mu - fit@resp$mu)),
    components = laplace_components(fit, lap, d$count, paste(
      "Where logLik_minus_lme4 is not ~1e-13 the difference is in ldL2: mu and u agree to ~1e-15, so lme4's",
      "Cholesky factor is taken at the working weights of an earlier PIRLS iterate than the final mu (most likely",
      "the one before the last step); the exact Laplace value is logLik here.")))
}

## ---------------------------------------------------------------- cases

cases <- list(); failures <- list(); fits <- list()
run_case <- function(case_id, expr) {
  res <- tryCatch({ cases[[case_id]] <<- expr; "ok" },
                  error = function(e) { failures[[case_id]] <<- conditionMessage(e); paste("FAILED:", conditionMessage(e)) })
  cat(sprintf("%-24s %s\n", case_id, res))
}
Iq <- diag(q)

gauss_case <- function(reml, notes) {
  cap <- capture(fit_known_lmer(L, REML = reml))
  fit <- cap$value
  fits[[if (reml) "gaussian_reml" else "gaussian_ml"]] <<- fit
  list(data_file = "known_cov_sim.csv", A_file = "known_cov_A.csv", data_prep = DATA_PREP,
       control = TIGHT_LMER_TEXT,
       results = fit_block(fit, cap, L, LMER_CALLS(if (reml) "TRUE" else "FALSE", "L")),
       direct = direct_gaussian(fit, A), notes = notes)
}

run_case("gaussian_reml", gauss_case(TRUE, paste(
  "REML. theta = sigma_b / sigma; sigma_b = theta * sigma (the SD of the species effect b, whose correlation",
  "across species is A). True values: sigma_b 0.8, sigma 0.6, fixef (1, 0.5).")))
run_case("gaussian_ml", gauss_case(FALSE, paste(
  "ML (REML = FALSE); deviance = -2 logLik. True values: sigma_b 0.8, sigma 0.6, fixef (1, 0.5).")))
run_case("poisson_laplace", {
  cap <- capture(fit_known_glmer(L)); fits$poisson_laplace <- cap$value
  list(data_file = "known_cov_sim.csv", A_file = "known_cov_A.csv", data_prep = DATA_PREP,
       control = TIGHT_GLMER_TEXT,
       results = fit_block(cap$value, cap, L, GLMER_CALLS("L")),
       direct = direct_poisson(cap$value, L),
       notes = paste(MODULAR_GLMER_NOTE, "True values: sigma_b 0.8 * 0.7 = 0.56, fixef (0.2, 0.3)."))
})

## One identity-check fit as recorded (calls: its r_calls or r_call entry); gaussian fits carry REMLcrit,
## sigma and sigma_b, poisson ones the deviance.
identity_record <- function(calls, fit, cap, u, gaussian) {
  c(calls,
    list(logLik = as.numeric(logLik(fit))),
    if (gaussian) list(REMLcrit = REMLcrit(fit)) else list(deviance = deviance(fit)),
    list(theta = arr(getME(fit, "theta"))),
    if (gaussian) list(sigma = sigma(fit), sigma_b = unname(getME(fit, "theta")) * sigma(fit)),
    list(fixef = named(fixef(fit)), fixef_se = arr(sqrt(diag(as.matrix(vcov(fit))))), blups = arr(u),
         fit_warnings = arr(cap$warnings), fit_messages = arr(cap$messages)))
}

## The modular fit with A = I against lme4's own (1 | species) fit: both must agree.
identity_comparison <- function(fit, ref, u, ur, reference_name, gaussian) {
  out <- list(as.numeric(logLik(fit)) - as.numeric(logLik(ref)))
  names(out) <- paste0("logLik_modular_minus_", reference_name)
  c(out,
    list(theta_abs_diff = abs(getME(fit, "theta") - getME(ref, "theta"))[[1]]),
    if (gaussian) list(sigma_abs_diff = abs(sigma(fit) - sigma(ref))),
    list(fixef_max_abs_diff = max(abs(fixef(fit) - fixef(ref))),
         blups_max_abs_diff = max(abs(u - ur)),
         fitted_max_abs_diff = max(abs(fitted(fit) - fitted(ref))),
         all_identical = identical(as.numeric(logLik(fit)), as.numeric(logLik(ref))) &&
           identical(getME(fit, "theta"), getME(ref, "theta")) &&
           identical(fixef(fit), fixef(ref)) && identical(u, ur)))
}

run_case("gaussian_identity_check", {
  cap <- capture(fit_known_lmer(Iq, REML = TRUE))
  fit <- cap$value
  ref_call <- sprintf("lmer(y ~ x + (1 | species), data = d, REML = TRUE, control = %s)", TIGHT_LMER_TEXT)
  capr <- capture(eval(parse(text = ref_call)))
  ref <- capr$value
  u <- ranef(fit)$species[[1]]; ur <- ranef(ref)$species[[1]]
  list(data_file = "known_cov_sim.csv", data_prep = DATA_PREP, control = TIGHT_LMER_TEXT,
       note = paste("gaussian_reml's machinery (Zt replaced by t(Z %*% L)) with A = I (L = diag(30)), against",
                    "plain lmer with the same control: the two must agree (the replaced Zt equals lme4's own)."),
       modular = identity_record(list(r_calls = arr(LMER_CALLS("TRUE", "diag(30)"))), fit, cap, u, TRUE),
       lmer = identity_record(list(r_call = ref_call), ref, capr, ur, TRUE),
       comparison = identity_comparison(fit, ref, u, ur, "lmer", TRUE),
       direct = direct_gaussian(fit, Iq))
})

run_case("poisson_identity_check", {
  cap <- capture(fit_known_glmer(Iq))
  fit <- cap$value
  ref_call <- sprintf("glmer(count ~ x + (1 | species), data = d, family = poisson, control = %s)", TIGHT_GLMER_TEXT)
  capr <- capture(eval(parse(text = ref_call)))
  ref <- capr$value
  u <- ranef(fit)$species[[1]]; ur <- ranef(ref)$species[[1]]
  list(data_file = "known_cov_sim.csv", data_prep = DATA_PREP, control = TIGHT_GLMER_TEXT,
       note = paste("poisson_laplace's machinery with A = I (L = diag(30)), against plain glmer with the same",
                    "control (both warn 'unused control arguments ignored' in stage 1)."),
       modular = identity_record(list(r_calls = arr(GLMER_CALLS("diag(30)"))), fit, cap, u, FALSE),
       glmer = identity_record(list(r_call = ref_call), ref, capr, ur, FALSE),
       comparison = identity_comparison(fit, ref, u, ur, "glmer", FALSE),
       direct = direct_poisson(fit, Iq))
})

## ---------------------------------------------------------------- JSON

top <- list(
  description = paste("lme4 reference fits (lme4qtl's construction with lme4's modular functions) for a random",
                      "intercept whose levels have a KNOWN correlation matrix A (phylogeny / pedigree style:",
                      "brms (1 | gr(species, cov = A)), lme4qtl relmatLmer, MCMCglmm ginverse), on simulated data:",
                      "gaussian REML and ML, poisson Laplace, and checks of the machinery with A = I."),
  script = "tests/data/r/known_cov_references.R", versions = versions,
  simulation = SIM_CODE,
  model = paste(
    "y = X beta + Z b + e, b ~ N(0, sigma_b^2 A), e ~ N(0, sigma^2 I) (gaussian); count ~ Poisson(exp(X beta + Z b))",
    "(poisson). X = [1, x]; Z = the n x 30 indicator of species (columns in level order sp01..sp30, = A's order).",
    "Fitted as lme4qtl does: A = L L' with L = t(chol(A)) (lower Cholesky factor), b = L u, u ~ N(0, sigma_b^2 I),",
    "i.e. lme4's (1 | species) with its Zt replaced by t(Z %*% L). theta = sigma_b / sigma (gaussian), sigma_b",
    "(poisson). ranef(fit) gives u; b = L %*% u. logLik / REMLcrit / deviance are invariant to the choice of the",
    "factor L (any L with A = L L' gives the same likelihood)."),
  data = list(file = "known_cov_sim.csv", nrow = nrow(d), columns = arr(names(d)),
              factor_levels = list(species = arr(levels(d$species))),
              A_file = "known_cov_A.csv",
              A_note = paste("first column species (the row's level), then one column per species in level order;",
                             "A symmetric (exactly), unit diagonal (exactly)"),
              species_positions = arr(pts),
              A_cholesky_L = mat(L),
              A_eigen_range = arr(range(eigen(A, symmetric = TRUE, only.values = TRUE)$values)),
              truth = list(b = arr(b_true), u = arr(u_true),
                           gaussian = list(sigma_b = 0.8, sigma = 0.6, fixef = arr(c(1, 0.5))),
                           poisson = list(sigma_b = 0.56, fixef = arr(c(0.2, 0.3)), b = arr(0.7 * b_true)),
                           note = "b (level order) = 0.8 * L %*% u; the poisson linear predictor uses 0.7 * b")),
  tolerances = modular_tolerances(TIGHT_LMER_TEXT, TIGHT_GLMER_TEXT,
                                  "see the script's header and tests/data/r/smooth_references.R"),
  reproducibility = paste(
    "reruns are byte-identical (CSVs and JSON); checked with 12 runs with ASLR on and one with ASLR off (setarch",
    "-R), all identical, so the script runs as it is (no setarch re-run as in smooth_references.R). Compare on",
    "other machines at the optimiser's accuracy, not bit for bit."),
  cases = cases,
  failures = if (length(failures)) failures else NULL)
jpath <- file.path(OUT, "known_cov_references.json")
write_json_file(top, jpath)
## read back: valid JSON, numbers exact
back <- fromJSON(jpath, simplifyVector = FALSE)
for (cid in intersect(c("gaussian_reml", "gaussian_ml", "poisson_laplace"), names(cases))) {
  r0 <- cases[[cid]]$results; r1 <- back$cases[[cid]]$results
  stopifnot(identical(r1$logLik, r0$logLik), identical(r1$sigma_b, r0$sigma_b),
            identical(as.numeric(unlist(r1$fixef$values)), as.numeric(r0$fixef$values)),
            identical(as.numeric(unlist(r1$fixef_se)), as.numeric(r0$fixef_se)),
            identical(as.numeric(unlist(r1$blups$b)), as.numeric(r0$blups$b)),
            identical(as.numeric(unlist(r1$fitted)), as.numeric(r0$fitted)),
            identical(as.numeric(unlist(r1$vcov)), as.numeric(t(r0$vcov))))
}
stopifnot(identical(as.numeric(unlist(back$data$A_cholesky_L)), as.numeric(t(L))))
cat("wrote", jpath, "(", file.size(jpath), "bytes )\n")

## ---------------------------------------------------------------- summary

options(width = 200)
cat("\n==== summary ====\n")
for (cid in intersect(c("gaussian_reml", "gaussian_ml", "poisson_laplace"), names(cases))) {
  r <- cases[[cid]]$results; dr <- cases[[cid]]$direct
  cat(sprintf("%-16s logLik %.10f  %s %.10f  sigma_b %.8f%s  theta %.8f  feval %d  |grad| %.1e\n", cid, r$logLik,
              if (!is.null(r$REMLcrit)) "REMLcrit" else "deviance",
              if (!is.null(r$REMLcrit)) r$REMLcrit else r$deviance, r$sigma_b,
              if (!is.null(r$sigma)) sprintf("  sigma %.8f", r$sigma) else "", unlist(r$theta$values),
              r$optinfo$feval, r$optinfo$max_abs_gradient))
  cat("   fixef (se):", paste(sprintf("%s=%.8f (%.8f)", unlist(r$fixef$names), unlist(r$fixef$values),
                                      unlist(r$fixef_se)), collapse = " "), "\n")
  cat("   b[1:5]:", sprintf("%.6f", unlist(r$blups$b)[1:5]), " fitted check:", r$fitted_check_max_abs_diff, "\n")
  cat(sprintf("   direct: logLik - lme4 %.3e  blups %.3e", dr$logLik_minus_lme4, dr$blups_max_abs_diff))
  if (!is.null(dr$optim)) cat(sprintf("  fixef %.3e  se %.3e  optim gain %.3e  dsb %.2e dsigma %.2e (conv %d)",
                                      dr$fixef_max_abs_diff, dr$fixef_se_max_abs_diff, dr$optim$logLik_gain_vs_lme4,
                                      dr$optim$sigma_b_rel_diff, dr$optim$sigma_rel_diff, dr$optim$convergence))
  cat("\n   warnings:", if (length(r$fit_warnings)) paste(unique(unlist(r$fit_warnings)), collapse = " | ") else "none",
      " messages:", if (length(r$fit_messages)) paste(unique(unlist(r$fit_messages)), collapse = " | ") else "none", "\n")
}
for (cid in intersect(c("gaussian_identity_check", "poisson_identity_check"), names(cases))) {
  cc <- cases[[cid]]; cm <- cc$comparison
  other <- if (!is.null(cc$lmer)) cc$lmer else cc$glmer
  cat(sprintf("%-24s modular logLik %.10f  %s logLik %.10f  diff %.3e  theta %.3e fixef %.3e blups %.3e identical %s  direct - lme4 %.3e\n",
              cid, cc$modular$logLik, if (!is.null(cc$lmer)) "lmer" else "glmer", other$logLik,
              cm[[1]], cm$theta_abs_diff, cm$fixef_max_abs_diff, cm$blups_max_abs_diff, cm$all_identical,
              cc$direct$logLik_minus_lme4))
}
if (length(failures)) { cat("\nFAILED cases:\n"); for (nm in names(failures)) cat(" ", nm, ":", failures[[nm]], "\n") } else cat("\nno failures\n")
