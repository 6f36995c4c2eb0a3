## lme4 reference fits for brms-style MULTI-MEMBERSHIP random intercepts, `(1 | mm(s1, s2))` (a pupil who attended
## two schools gets the weighted sum of the two schools' effects), on simulated data.
##
## Run from the repository root:   Rscript tests/data/r/mm_references.R
## Writes tests/data/mm_sim.csv (the data; doubles as the shortest round-trip decimals, read back equal) and
## tests/data/mm_references.json (all cases), and prints a summary. About 10 s. Reruns are byte-identical (see
## Reproducibility).
##
## Model (brms's mm() semantics): row i's random effect is sum_k w_ik b[s_ik] (k = 1, 2), b ~ N(0, sigma_b^2 I) over
## the levels = the union of the values of s1 and s2 (sorted text order: S01..S40). Weights: mm(s1, s2) -> 1/2 each;
## mm(s1, s2, weights = cbind(w1, w2)) (scale = TRUE, brms's default) -> w_ik = w_k / (w1 + w2);
## mm(s1, s2, weights = cbind(w1, w2), scale = FALSE) -> the raw w1, w2. Where s1 == s2 the two weights add up in
## that level's column. So the term's design is W, the n x 40 membership weight matrix (W[i, j] = sum of the row's
## weights on school j), in place of a single school's indicator. As the standard lme4 multi-membership
## construction does it with lme4's modular functions: lFormula / glFormula with (1 | s1), s1 a factor whose levels
## are the union S01..S40 (so the indicator has all 40 rows), then the term's Zt (and its Ztlist block) replaced by
## t(W) (a dgCMatrix), then the rest of lme4 1.1-31's lmer() / glmer() bodies step by step (see fit_mm_lmer /
## fit_mm_glmer below, and modular_lmer / modular_glmer in tests/data/r/reference_helpers.R). With a second term (1 | region): lme4 orders the terms by decreasing number of levels, so
## the school term (40 levels) comes first and region (8) second; Zt is the rbind of the Ztlist blocks, so only the
## first block is replaced and Zt rebuilt as rbind(t(W), Ztlist[[2]]). theta = sigma_b / sigma (gaussian) or
## sigma_b (poisson); ranef(fit)$s1 are the 40 school effects b (BLUPs / conditional modes) in level order.
##
## Cases:
##   gaussian_reml                  y ~ x + (1 | mm(s1, s2)), equal weights, REML
##   gaussian_ml_weights            y ~ x + (1 | mm(s1, s2, weights = cbind(w1, w2))) (scale = TRUE), ML
##   gaussian_reml_unscaled_region  y ~ x + (1 | mm(s1, s2, weights = cbind(w1, w2), scale = FALSE)) + (1 | region),
##                                  REML
##   poisson_laplace                count ~ x + (1 | mm(s1, s2)), equal weights, poisson, Laplace (glmer's two stages)
## and `machinery_check`: with W = the indicator of s1 the replaced Zt (one and two terms, lFormula and glFormula) is
## identical to lme4's own.
## Gaussian cases also carry `direct`: the log-likelihood (the REML criterion where REML), GLS fixed effects and se,
## and the BLUPs recomputed from the marginal MVN, V = sigma_b^2 W W' (+ sigma_region^2 Zr Zr') + sigma^2 I, at the
## fitted parameters, plus a re-maximisation of that direct likelihood by optim (an independent check of the
## optimum). The poisson case carries `direct`: the Laplace log-likelihood recomputed at the fitted (sigma_b, beta)
## by a Newton iteration independent of lme4 for the mode of b (poisson_laplace_direct in reference_helpers.R).
##
## Tolerances: gaussian lmerControl(optCtrl = list(xtol_abs = 1e-12, ftol_abs = 1e-14, xtol_rel = 1e-12, ftol_rel =
## 1e-14)) (nloptwrap, the repository's tight lme4 setting); poisson glmerControl(tolPwrss = 1e-13, optCtrl =
## list(xt = rep(1e-10, 3), FtolAbs = 1e-14, maxfun = 1e5)) as in known_cov_references.R: glmer passes optCtrl to
## both stages, stage 1 (minqa bobyqa, theta only, nAGQ = 0) warns "unused control arguments ignored" (xt, FtolAbs
## are not bobyqa controls; stage 1 only supplies the start of stage 2), stage 2 (lme4's Nelder_Mead, theta and beta)
## stops on its absolute parameter tolerance xt (one entry per parameter: 1 theta + 2 beta). tolPwrss = 1e-13
## removes the PIRLS bias of glmer's Laplace objective (see tests/data/r/lme4_tighter.R).
##
## Reproducibility: reruns are byte-identical (CSV and JSON; md5 sums compared over 13 runs with address-space layout
## randomisation (ASLR) on and one under `setarch -R` (ASLR off), all identical), so, like known_cov_references.R, the
## script does not re-run itself under `setarch -R`. (A full lmer(y ~ x + (1 | s1) + (1 | region)) refit, tried as an
## identity check, did move in its last digits with ASLR; it is replaced by the exact Zt check `machinery_check`.)
## The JSON's provenance.date is a constant (the date the references were generated), not Sys.Date(), so that
## reruns stay byte-identical.
##
## Number formatting, CSV writer and JSON conventions are in tests/data/r/reference_helpers.R, and so are the parts
## shared with known_cov_references.R: the modular lmer / glmer bodies and their R calls, the lme4 parts of a fit's
## summary and the direct Laplace log-likelihood.
##
## Tested with R 4.2.2, lme4 1.1-31, Matrix 1.5-3, minqa 1.2.5, nloptr 2.0.3, jsonlite 1.8.4 (Debian bookworm
## packages).

source(file.path("tests", "data", "r", "reference_helpers.R"))   # arr, mat, named, capture, parse_exact, fmt_num,
                                                                 # write_csv_exact, lme4 helpers
OUT <- start_script(c("lme4", "jsonlite"))   # lme4 attaches Matrix; OUT = tests/data

versions <- lme4_versions()
GENERATED_DATE <- "2026-12-04"   # a constant (reruns byte-identical): the date these references were generated
SCRIPT <- "tests/data/r/mm_references.R"

## ---------------------------------------------------------------- data

set.seed(20261206)   # default RNG kinds (Mersenne-Twister, Inversion, Rejection)
q <- 40; n_reg <- 8; n <- 600
SCHOOLS <- sprintf("S%02d", seq_len(q))
REGIONS <- sprintf("R%d", seq_len(n_reg))
reg_idx <- sample(n_reg, n, replace = TRUE)                    # region of each row
s1_idx <- sample(q, n, replace = TRUE)                         # first school
same <- runif(n) < 0.3                                         # ~30% of rows: one school only (s2 = s1)
other <- (s1_idx - 1 + sample(q - 1, n, replace = TRUE)) %% q + 1   # another school, uniform over the other 39
s2_idx <- ifelse(same, s1_idx, other)
w1 <- sample(12, n, replace = TRUE)                            # months in s1 (integer)
w2 <- sample(12, n, replace = TRUE)                            # months in s2 (integer)
x <- rnorm(n)
b_true <- rnorm(q, 0, 0.8)                                     # school effects, S01..S40
r_true <- rnorm(n_reg, 0, 0.5)                                 # region effects, R1..R8
mm_months <- (w1 / (w1 + w2)) * b_true[s1_idx] + (w2 / (w1 + w2)) * b_true[s2_idx]   # scaled months weights
y <- 1 + 0.5 * x + mm_months + r_true[reg_idx] + rnorm(n, 0, 0.6)
count <- rpois(n, exp(0.3 + 0.3 * x + 0.7 * (b_true[s1_idx] + b_true[s2_idx]) / 2))
D0 <- data.frame(y = y, count = count, x = x, s1 = SCHOOLS[s1_idx], s2 = SCHOOLS[s2_idx], w1 = w1, w2 = w2,
                 region = REGIONS[reg_idx], stringsAsFactors = FALSE)
stopifnot(is.integer(D0$count), is.integer(D0$w1), is.integer(D0$w2),
          all(D0$s1 != D0$s2 | same), all(D0$s1[same] == D0$s2[same]))

csv_path <- file.path(OUT, "mm_sim.csv")
write_csv_exact(D0, csv_path)
cat("wrote", csv_path, "(", nrow(D0), "rows ); read-back exact\n")

## The fits use the data re-read from the CSV (identical values; checked). The levels of the membership term are the
## union of s1's and s2's values, sorted; s1 becomes a factor with those levels (the lme4 term (1 | s1) then has all
## 40 of them; every school occurs in s1 here, checked, so no level is dropped by model.frame).
d <- read.csv(csv_path, colClasses = c(y = "character", count = "integer", x = "character", s1 = "character",
                                       s2 = "character", w1 = "integer", w2 = "integer", region = "character"))
d$y <- parse_exact(d$y); d$x <- parse_exact(d$x)
stopifnot(identical(d, D0))
LV <- sort(union(d$s1, d$s2), method = "radix")
stopifnot(identical(LV, SCHOOLS), setequal(unique(d$s1), LV))
d$s1 <- factor(d$s1, levels = LV)
d$region <- factor(d$region)
stopifnot(identical(levels(d$region), REGIONS))
n_same <- sum(d$s1 == d$s2)

SIM_CODE <- paste(
  "set.seed(20261206); default RNG kinds. q = 40 schools sprintf('S%02d', 1:40), 8 regions sprintf('R%d', 1:8),",
  "n = 600. In this order: region = sample(8, n, TRUE); s1 = sample(40, n, TRUE); same = runif(n) < 0.3;",
  "other = (s1 - 1 + sample(39, n, TRUE)) %% 40 + 1 (a school other than s1); s2 = ifelse(same, s1, other);",
  "w1 = sample(12, n, TRUE); w2 = sample(12, n, TRUE) (integer months in each school); x = rnorm(n);",
  "b = rnorm(40, 0, 0.8) (schools S01..S40); r = rnorm(8, 0, 0.5) (regions R1..R8);",
  "y = 1 + 0.5 * x + (w1 / (w1 + w2)) * b[s1] + (w2 / (w1 + w2)) * b[s2] + r[region] + rnorm(n, 0, 0.6);",
  "count = rpois(n, exp(0.3 + 0.3 * x + 0.7 * (b[s1] + b[s2]) / 2)). mm_sim.csv: columns y, count, x, s1, s2,",
  "w1, w2, region (s1, s2, region as their labels).")
DATA_PREP <- paste(
  "d <- read.csv('tests/data/mm_sim.csv'); lv <- sort(union(d$s1, d$s2)) (S01..S40); d$s1 <- factor(d$s1,",
  "levels = lv); d$region <- factor(d$region) (R1..R8); s2 stays text. (The script parses the doubles with a",
  "correctly rounded parser; identical values.) The membership weight matrix W (n x 40, columns lv) is built as",
  "in each case's r_calls: Matrix::sparseMatrix(i = rep(1:n, 2), j = c(match(d$s1, lv), match(d$s2, lv)), x =",
  "c(a1, a2), dims = c(n, 40)) (duplicate (i, j), i.e. s1 == s2, are summed) with (a1, a2) = (1/2, 1/2) (equal",
  "weights), (w1, w2) / (w1 + w2) (scale = TRUE) or (w1, w2) (scale = FALSE).")

## ---------------------------------------------------------------- the membership matrices

## W: n x q dgCMatrix, columns in level order; a1, a2 the row's weights on s1 and s2 (after scaling).
mm_matrix <- function(a1, a2) {
  W <- Matrix::sparseMatrix(i = rep(seq_len(n), 2), j = c(match(as.character(d$s1), LV), match(d$s2, LV)),
                            x = c(a1, a2), dims = c(n, q), dimnames = list(NULL, LV))
  stopifnot(is(W, "dgCMatrix"))
  W
}
wd1 <- as.numeric(d$w1); wd2 <- as.numeric(d$w2)
W_EQUAL <- mm_matrix(rep(1, n) / (1 + 1), rep(1, n) / (1 + 1))
W_SCALED <- mm_matrix(wd1 / (wd1 + wd2), wd2 / (wd1 + wd2))
W_RAW <- mm_matrix(wd1, wd2)
Z_S1 <- Matrix::t(Matrix::fac2sparse(d$s1))          # the indicator of s1 alone (lme4's own block; machinery check)
stopifnot(identical(colnames(Z_S1), LV), all(W_EQUAL@x == 0.5 | W_EQUAL@x == 1),
          max(abs(Matrix::rowSums(W_SCALED) - 1)) < 1e-15,
          all(Matrix::rowSums(W_RAW) == wd1 + wd2), all(Matrix::rowSums(W_EQUAL) == 1),
          all(Matrix::rowSums(W_EQUAL > 0) == ifelse(d$s1 == d$s2, 1, 2)))
Z_REG <- Matrix::t(Matrix::fac2sparse(d$region))     # region indicator (n x 8), for the direct checks

W_CALLS <- list(
  equal = c(
    "lv <- sort(union(d$s1, d$s2)); n <- nrow(d)",
    paste("W <- Matrix::sparseMatrix(i = rep(seq_len(n), 2), j = c(match(as.character(d$s1), lv), match(d$s2, lv)),",
          "x = c(rep(1, n) / (1 + 1), rep(1, n) / (1 + 1)), dims = c(n, length(lv)), dimnames = list(NULL, lv))",
          "  # mm(s1, s2): weights 1/2 each; s1 == s2 -> 1 in that column")),
  scaled = c(
    "lv <- sort(union(d$s1, d$s2)); n <- nrow(d); w1 <- as.numeric(d$w1); w2 <- as.numeric(d$w2)",
    paste("W <- Matrix::sparseMatrix(i = rep(seq_len(n), 2), j = c(match(as.character(d$s1), lv), match(d$s2, lv)),",
          "x = c(w1 / (w1 + w2), w2 / (w1 + w2)), dims = c(n, length(lv)), dimnames = list(NULL, lv))",
          "  # mm(s1, s2, weights = cbind(w1, w2)), scale = TRUE")),
  raw = c(
    "lv <- sort(union(d$s1, d$s2)); n <- nrow(d); w1 <- as.numeric(d$w1); w2 <- as.numeric(d$w2)",
    paste("W <- Matrix::sparseMatrix(i = rep(seq_len(n), 2), j = c(match(as.character(d$s1), lv), match(d$s2, lv)),",
          "x = c(w1, w2), dims = c(n, length(lv)), dimnames = list(NULL, lv))",
          "  # mm(s1, s2, weights = cbind(w1, w2), scale = FALSE)")))

## ---------------------------------------------------------------- the modular fits

TIGHT_LMER_TEXT <- "lmerControl(optCtrl = list(xtol_abs = 1e-12, ftol_abs = 1e-14, xtol_rel = 1e-12, ftol_rel = 1e-14))"
TIGHT_GLMER_TEXT <- "glmerControl(tolPwrss = 1e-13, optCtrl = list(xt = rep(1e-10, 3), FtolAbs = 1e-14, maxfun = 1e5))"
TIGHT_LMER <- eval(parse(text = TIGHT_LMER_TEXT))
TIGHT_GLMER <- eval(parse(text = TIGHT_GLMER_TEXT))

## Replace the school term's block (the first: 40 levels > 8 regions) by t(W) and rebuild Zt as the rbind of the
## blocks (checked first to reproduce lme4's own Zt exactly).
replace_mm_zt <- function(mod, W) {
  rt <- mod$reTrms
  stopifnot(names(rt$Ztlist)[1] == "1 | s1", identical(rownames(rt$Ztlist[[1]]), LV),
            max(abs(as.matrix(rt$Ztlist[[1]]) - as.matrix(Matrix::t(Z_S1)))) == 0,
            identical(as.matrix(as(do.call(rbind, rt$Ztlist), "CsparseMatrix")), as.matrix(rt$Zt)))
  if (length(rt$Ztlist) == 2) stopifnot(names(rt$Ztlist)[2] == "1 | region",
                                        identical(rownames(rt$Ztlist[[2]]), REGIONS))
  Zt1 <- as(Matrix::t(W), "CsparseMatrix")
  dimnames(Zt1) <- dimnames(rt$Ztlist[[1]])
  rt$Ztlist[[1]] <- Zt1
  rt$Zt <- as(do.call(rbind, rt$Ztlist), "CsparseMatrix")
  stopifnot(is(rt$Zt, "dgCMatrix"), identical(dim(rt$Zt), dim(mod$reTrms$Zt)))
  mod$reTrms <- rt
  mod
}

ZT_CALLS <- function(obj) c(
  "Zt1 <- as(Matrix::t(W), \"CsparseMatrix\"); dimnames(Zt1) <- dimnames(%s$reTrms$Ztlist[[1]])   # block 1 = (1 | s1)",
  "%s$reTrms$Ztlist[[1]] <- Zt1; %s$reTrms$Zt <- as(do.call(rbind, %s$reTrms$Ztlist), \"CsparseMatrix\")") |>
  gsub(pattern = "%s", replacement = obj, fixed = TRUE)

## The exact R calls (lmer()'s / glmer()'s body in lme4 1.1-31, MODULAR_*_CALLS in reference_helpers.R, with the Zt
## replacement inserted).
B_CALL <- "b <- ranef(fit)$s1[[1]]   # the 40 school effects (BLUPs), level order"
LMER_CALLS <- function(formula_text, reml, wkey) c(
  W_CALLS[[wkey]],
  sprintf("ctrl <- %s", TIGHT_LMER_TEXT),
  sprintf("lmod <- lFormula(%s, data = d, REML = %s, control = ctrl)", formula_text, reml),
  ZT_CALLS("lmod"), MODULAR_LMER_CALLS, B_CALL)
GLMER_CALLS <- function(wkey) c(
  W_CALLS[[wkey]],
  sprintf("ctrl <- %s", TIGHT_GLMER_TEXT),
  "glmod <- glFormula(count ~ x + (1 | s1), data = d, family = poisson, control = ctrl)",
  ZT_CALLS("glmod"), MODULAR_GLMER_CALLS, B_CALL)

fit_mm_lmer <- function(formula, W, REML) {
  lmod <- lFormula(formula, data = d, REML = REML, control = TIGHT_LMER)
  modular_lmer(replace_mm_zt(lmod, W), TIGHT_LMER)
}
fit_mm_glmer <- function(W) {
  glmod <- glFormula(count ~ x + (1 | s1), data = d, family = poisson, control = TIGHT_GLMER)
  modular_glmer(replace_mm_zt(glmod, W), TIGHT_GLMER)
}

## ---------------------------------------------------------------- fit summaries

has_region <- function(fit) "region" %in% names(getME(fit, "flist"))

## The fit's summary (the lme4 parts from reference_helpers.R): calls, the membership term, criteria, the SDs,
## theta, fixef, the BLUPs, fitted values, optinfo (with the scaled gradient checkConv tests).
## mm: list(brms_term, weights, scale) describing the membership term; W its weight matrix.
fit_block <- function(fit, cap, W, calls, mm) {
  gauss <- family(fit)$family == "gaussian"
  th <- getME(fit, "theta")
  reg <- has_region(fit)
  stopifnot(identical(names(th), c("s1.(Intercept)", if (reg) "region.(Intercept)")))
  s <- if (gauss) sigma(fit) else NULL
  sds <- if (gauss) unname(th) * s else unname(th)
  sb <- sds[1]
  re <- ranef(fit)
  stopifnot(identical(rownames(re$s1), LV))
  b <- re$s1[[1]]
  if (reg) { stopifnot(identical(rownames(re$region), REGIONS)); br <- re$region[[1]] }
  eta <- as.vector(getME(fit, "X") %*% fixef(fit) + W %*% b + (if (reg) Z_REG %*% br else 0))
  oi <- fit@optinfo
  sg <- as.vector(solve(oi$derivs$Hessian, oi$derivs$gradient))
  c(lme4_calls_part(fit, cap, calls),
    list(membership = list(brms_term = mm$brms_term, weights = mm$weights, scale = mm$scale,
                           levels = arr(LV), W_nnz = length(W@x), W_row_sum_range = arr(range(Matrix::rowSums(W))),
                           rows_s1_equals_s2 = n_same,
                           note = paste("W: the n x 40 membership weight matrix (columns = levels, the sorted union",
                                        "of s1 and s2); the term's Zt block is t(W); rows with s1 == s2 have one",
                                        "nonzero (the two weights summed)")),
         nobs = nobs(fit), ngrps = as.list(ngrps(fit))),
    lme4_criteria(fit),
    list(sigma = s, sigma_b = sb, sigma_b_sq = sb^2,
         sigma_region = if (reg) sds[2] else NULL),
    lme4_coef_part(fit),
    list(blups = list(levels = arr(LV), values = arr(b),
                      note = paste("ranef(fit)$s1: the conditional modes (BLUPs) of the 40 school effects b of the",
                                   "mm term, in level order S01..S40 (lme4's term is named s1 but is the membership",
                                   "term)")),
         region_blups = if (reg) list(levels = arr(REGIONS), values = arr(br),
                                      note = "ranef(fit)$region, level order R1..R8") else NULL),
    lme4_fitted_part(fit, eta, paste("= X fixef + W b", if (reg) "+ Z_region b_region" else "",
                                     "; fitted_check_max_abs_diff: against that recomputed from fixef and the",
                                     "BLUPs here")),
    list(optinfo = lme4_optinfo(
      fit, lme4_messages = TRUE, extra = list(scaled_gradient = arr(sg), max_abs_scaled_gradient = max(abs(sg))),
      note = paste("fit@optinfo; gradient: lme4's finite-difference gradient (deriv12, central differences with",
                   "step 1e-4) of the final objective at the optimum",
                   if (gauss) "(theta);" else "(stage 2: theta, then beta);",
                   "scaled_gradient = solve(Hessian, gradient), what lme4's checkConv tests (tolerance 0.001); no",
                   "lme4 convergence message (lme4_messages empty)"))),
    lme4_fixef_se_notes(fit))
}

## Gaussian: the marginal MVN at the fitted parameters: V = sigma_b^2 W W' (+ sigma_region^2 Zr Zr') + sigma^2 I.
## GLS beta and se, ML / REML log-likelihood, BLUPs b = sigma_b^2 W' V^-1 (y - X beta) (and the region ones); then
## optim (BFGS on the log SDs) of that direct log-likelihood from the fit, as an independent check of the optimum.
direct_gaussian <- function(fit, W) {
  X <- getME(fit, "X"); yy <- d$y; reml <- isREML(fit); reg <- has_region(fit)
  Zs <- c(list(as.matrix(W)), if (reg) list(as.matrix(Z_REG)))
  ZZ <- lapply(Zs, tcrossprod)
  ll_fun <- function(sds, s, blups = FALSE) {
    V <- s^2 * diag(n)
    for (k in seq_along(ZZ)) V <- V + sds[k]^2 * ZZ[[k]]
    cV <- chol(V)
    Vi <- chol2inv(cV)
    ViX <- Vi %*% X
    XtViX <- crossprod(X, ViX)
    bh <- solve(XtViX, crossprod(ViX, yy))
    r <- yy - X %*% bh
    ll_ml <- -0.5 * (n * log(2 * pi) + 2 * sum(log(diag(cV))) + sum(backsolve(cV, r, transpose = TRUE)^2))
    ll <- if (reml) ll_ml - 0.5 * as.numeric(determinant(XtViX)$modulus) + 0.5 * ncol(X) * log(2 * pi) else ll_ml
    out <- list(ll = ll)
    if (blups) {
      Vir <- Vi %*% r
      out <- c(out, list(beta = as.vector(bh), Vb = solve(XtViX),
                         b = lapply(seq_along(Zs), function(k) as.vector(sds[k]^2 * crossprod(Zs[[k]], Vir)))))
    }
    out
  }
  s <- sigma(fit); sds <- unname(getME(fit, "theta")) * s
  at <- ll_fun(sds, s, blups = TRUE)
  re <- ranef(fit)
  bl <- c(list(re$s1[[1]]), if (reg) list(re$region[[1]]))
  ll_lme4 <- as.numeric(logLik(fit))
  np <- length(sds)
  opt <- optim(log(c(sds, s)), function(p) -ll_fun(exp(p[1:np]), exp(p[np + 1]))$ll, method = "BFGS",
               control = list(reltol = 1e-15, maxit = 1000))
  out <- list(
    note = paste("Recomputed from the marginal MVN, V = sigma_b^2 W W'", if (reg) "+ sigma_region^2 Zr Zr'" else "",
                 "+ sigma^2 I (W the membership weight matrix", if (reg) ", Zr the region indicator" else "",
                 "), at the fit's SDs and sigma:",
                 if (reml) "REML: log N(y; X beta_gls, V) - 1/2 log|X'V^-1X| + (p/2) log(2 pi), REMLcrit = -2 x that;"
                 else "ML: log N(y; X beta_gls, V);",
                 "beta_gls, se = sqrt(diag((X'V^-1X)^-1)), b = sigma_b^2 W' V^-1 (y - X beta_gls)",
                 if (reg) "(region: sigma_region^2 Zr' V^-1 (y - X beta_gls))." else ".",
                 "optim: BFGS on the log SDs and log sigma of that direct log-likelihood, started at the fit",
                 "(reltol 1e-15): the gain and the parameter moves measure how far lme4's optimum is from the",
                 "direct maximum."),
    logLik = at$ll, logLik_minus_lme4 = at$ll - ll_lme4, logLik_rel_diff = (at$ll - ll_lme4) / abs(ll_lme4))
  if (reml) out <- c(out, list(REMLcrit = -2 * at$ll, REMLcrit_minus_lme4 = -2 * at$ll - REMLcrit(fit)))
  c(out, list(
    fixef = arr(at$beta), fixef_max_abs_diff = max(abs(at$beta - fixef(fit))),
    fixef_se = arr(sqrt(diag(at$Vb))),
    fixef_se_max_abs_diff = max(abs(sqrt(diag(at$Vb)) - sqrt(diag(as.matrix(vcov(fit)))))),
    blups_max_abs_diff = max(abs(at$b[[1]] - bl[[1]])),
    region_blups_max_abs_diff = if (reg) max(abs(at$b[[2]] - bl[[2]])) else NULL,
    optim = c(list(convergence = opt$convergence, logLik = -opt$value,
                   logLik_gain_vs_lme4 = -opt$value - ll_lme4,
                   sigma_b = exp(opt$par[1]), sigma = exp(opt$par[np + 1])),
              if (reg) list(sigma_region = exp(opt$par[2])),
              list(sigma_b_rel_diff = exp(opt$par[1]) / sds[1] - 1, sigma_rel_diff = exp(opt$par[np + 1]) / s - 1),
              if (reg) list(sigma_region_rel_diff = exp(opt$par[2]) / sds[2] - 1))))
}

## Poisson: the Laplace log-likelihood at the fit's (theta = sigma_b, beta), recomputed here: the mode u_hat of
## sum(dpois(y, exp(X beta + theta W u), log = TRUE)) - u'u / 2 by Newton, then
## logLik = sum(dpois(y, mu_hat, log = TRUE)) - u_hat'u_hat / 2 - 1/2 log|I + theta^2 W' diag(mu_hat) W|.
direct_poisson <- function(fit, W) {
  th <- unname(getME(fit, "theta"))
  lap <- poisson_laplace_direct(d$count, as.vector(getME(fit, "X") %*% unname(fixef(fit))), th * as.matrix(W))
  ll <- lap$logLik
  b_fit <- ranef(fit)$s1[[1]]
  ll_lme4 <- as.numeric(logLik(fit))
  list(
    note = paste("The Laplace log-likelihood at the fit's theta (= sigma_b) and beta, recomputed here: u_hat =",
                 "the mode of sum(dpois(y, exp(X beta + theta W u), log = TRUE)) - u'u/2 (Newton, steps to",
                 "< 1e-14), logLik = sum(dpois(y, mu_hat, log = TRUE)) - u_hat'u_hat/2 - 1/2 log|I + theta^2 W'",
                 "diag(mu_hat) W|. b_hat = theta u_hat is compared with the BLUPs ranef(fit)$s1."),
    newton_iterations = lap$iterations,
    logLik = ll, logLik_minus_lme4 = ll - ll_lme4, logLik_rel_diff = (ll - ll_lme4) / abs(ll_lme4),
    blups_max_abs_diff = max(abs(th * lap$u - b_fit)),
    mu_max_abs_diff = max(abs(lap$mu - fit@resp$mu)),
    components = laplace_components(fit, lap, d$count))
}

## ---------------------------------------------------------------- cases

cases <- list(); failures <- list(); fits <- list()
run_case <- function(case_id, expr) {
  res <- tryCatch({ cases[[case_id]] <<- expr; "ok" },
                  error = function(e) { failures[[case_id]] <<- conditionMessage(e); paste("FAILED:", conditionMessage(e)) })
  cat(sprintf("%-30s %s\n", case_id, res))
}

gauss_case <- function(case_id, formula_text, reml, W, wkey, mm, notes) {
  cap <- capture(fit_mm_lmer(as.formula(formula_text), W, REML = reml))
  fit <- cap$value
  fits[[case_id]] <<- fit
  list(data_file = "mm_sim.csv", data_prep = DATA_PREP, control = TIGHT_LMER_TEXT,
       brms_formula = mm$brms_formula, lme4_formula = formula_text,
       results = fit_block(fit, cap, W, LMER_CALLS(formula_text, if (reml) "TRUE" else "FALSE", wkey), mm),
       direct = direct_gaussian(fit, W), notes = notes)
}

run_case("gaussian_reml", gauss_case(
  "gaussian_reml", "y ~ x + (1 | s1)", TRUE, W_EQUAL, "equal",
  list(brms_formula = "y ~ x + (1 | mm(s1, s2))", brms_term = "(1 | mm(s1, s2))", weights = "equal (1/2 each)",
       scale = TRUE),
  paste("REML, equal weights. theta = sigma_b / sigma; sigma_b = theta * sigma (the SD of the school effects b).",
        "The simulated region effects (SD 0.5) and the months weighting are not in this model (they end up in the",
        "residual / in b). Simulation values: sigma_b 0.8, sigma 0.6, fixef (1, 0.5).")))
run_case("gaussian_ml_weights", gauss_case(
  "gaussian_ml_weights", "y ~ x + (1 | s1)", FALSE, W_SCALED, "scaled",
  list(brms_formula = "y ~ x + (1 | mm(s1, s2, weights = cbind(w1, w2)))",
       brms_term = "(1 | mm(s1, s2, weights = cbind(w1, w2)))", weights = "cbind(w1, w2)", scale = TRUE),
  paste("ML (REML = FALSE); deviance = -2 logLik. Weights w_k / (w1 + w2) (brms scale = TRUE), the simulation's",
        "own weighting; region effects (SD 0.5) not in this model. Simulation values: sigma_b 0.8, sigma 0.6,",
        "fixef (1, 0.5).")))
run_case("gaussian_reml_unscaled_region", gauss_case(
  "gaussian_reml_unscaled_region", "y ~ x + (1 | s1) + (1 | region)", TRUE, W_RAW, "raw",
  list(brms_formula = "y ~ x + (1 | mm(s1, s2, weights = cbind(w1, w2), scale = FALSE)) + (1 | region)",
       brms_term = "(1 | mm(s1, s2, weights = cbind(w1, w2), scale = FALSE))", weights = "cbind(w1, w2)",
       scale = FALSE),
  paste("REML, two terms: the membership term with the raw months (w1, w2 unscaled; row sums 2..24) and (1 |",
        "region). lme4 orders the terms by decreasing number of levels: the school term (40) first, region (8)",
        "second; theta = (sigma_b, sigma_region) / sigma. The simulation used the scaled months, so sigma_b here is",
        "on the per-month scale (about 0.8 / mean(w1 + w2)); region simulation SD 0.5, sigma 0.6. optinfo's",
        "max_abs_gradient (about 1.5e-3, in theta_1) is the truncation error of lme4's step-1e-4 central",
        "difference: the REMLcrit's curvature in theta_1 is about 1.8e4 (theta_1 about 0.087); with steps 1e-5 /",
        "1e-6 the same difference gives about 2e-5 / 5e-6, the scaled gradient is about 8e-8, and the direct",
        "re-maximisation (direct$optim) moves sigma_b by under 1e-12 relative.")))
run_case("poisson_laplace", {
  cap <- capture(fit_mm_glmer(W_EQUAL)); fits$poisson_laplace <- cap$value
  mm <- list(brms_formula = "count ~ x + (1 | mm(s1, s2))", brms_term = "(1 | mm(s1, s2))",
             weights = "equal (1/2 each)", scale = TRUE)
  list(data_file = "mm_sim.csv", data_prep = DATA_PREP, control = TIGHT_GLMER_TEXT,
       brms_formula = mm$brms_formula, lme4_formula = "count ~ x + (1 | s1)",
       results = fit_block(cap$value, cap, W_EQUAL, GLMER_CALLS("equal"), mm),
       direct = direct_poisson(cap$value, W_EQUAL),
       notes = paste(MODULAR_GLMER_NOTE, "Simulation values: sigma_b 0.8 * 0.7 = 0.56, fixef (0.3, 0.3)."))
})

## The machinery check: with W = the indicator of s1 (each row a single school, weight 1) the replaced block and the
## rebuilt Zt must be identical (every slot) to lme4's own, for the one- and the two-term formulas and for lFormula
## and glFormula; the rest of the fit is lme4's own code, so the fit is then lme4's own fit. (A full refit of
## lmer(y ~ x + (1 | s1) + (1 | region)) next to the modular one is not recorded: on this data that fit's last digits
## (theta to ~2e-8) move between runs with address-space layout randomisation, which would break byte-identical reruns;
## the four cases above do not move.)
zt_identity <- function(mod) {
  m2 <- replace_mm_zt(mod, Z_S1)
  list(Zt_identical = identical(m2$reTrms$Zt, mod$reTrms$Zt),
       Ztlist_identical = identical(m2$reTrms$Ztlist, mod$reTrms$Ztlist),
       reTrms_identical = identical(m2$reTrms, mod$reTrms))
}
MACHINERY_FORMULAS <- list(
  lFormula_one_term = quote(lFormula(y ~ x + (1 | s1), data = d, REML = TRUE, control = TIGHT_LMER)),
  lFormula_two_terms = quote(lFormula(y ~ x + (1 | s1) + (1 | region), data = d, REML = TRUE, control = TIGHT_LMER)),
  glFormula_one_term = quote(glFormula(count ~ x + (1 | s1), data = d, family = poisson, control = TIGHT_GLMER)))
machinery <- lapply(MACHINERY_FORMULAS, function(cl) zt_identity(eval(cl)))
stopifnot(all(unlist(machinery)))
machinery_check <- c(
  list(note = paste("replace_mm_zt (block 1 of Ztlist replaced by t(W), dimnames kept, Zt rebuilt as",
                    "as(do.call(rbind, Ztlist), 'CsparseMatrix')) with W = Matrix::t(Matrix::fac2sparse(d$s1)), the",
                    "indicator of s1: the result is identical() (every slot) to lme4's own Zt / Ztlist / reTrms, so",
                    "the modular fits with W = indicator are lme4's own (1 | s1) fits. Also checked inside every",
                    "case: rbind of lme4's own blocks reproduces its Zt exactly, the school block is first (40 levels",
                    "before region's 8) with rows S01..S40 and equals the indicator of s1 before the replacement.")),
  Map(function(cl, res) c(list(call = paste(deparse(cl, width.cutoff = 500L), collapse = " ")), res),
      MACHINERY_FORMULAS, machinery))
cat(sprintf("%-30s %s\n", "machinery_check", "ok (replaced Zt with W = indicator identical to lme4's)"))

## ---------------------------------------------------------------- JSON

MAIN <- c("gaussian_reml", "gaussian_ml_weights", "gaussian_reml_unscaled_region", "poisson_laplace")
top <- list(
  description = paste("lme4 reference fits for brms-style multi-membership random intercepts, (1 | mm(s1, s2)),",
                      "built with lme4's modular functions (the term's Zt replaced by the weighted membership",
                      "matrix t(W)), on simulated pupils-in-two-schools data: gaussian REML (equal weights),",
                      "gaussian ML (months weights, scale = TRUE), gaussian REML (months weights, scale = FALSE,",
                      "plus (1 | region)), poisson Laplace (equal weights), and a check of the machinery."),
  provenance = list(
    script = SCRIPT, run = paste("Rscript", SCRIPT, "(from the repository root)"),
    date = GENERATED_DATE,
    date_note = "a constant in the script (the date the references were generated), so that reruns are byte-identical",
    versions = versions,
    simulation = SIM_CODE,
    data_prep = DATA_PREP,
    helpers = "tests/data/r/reference_helpers.R"),
  model = paste(
    "y = X beta + W b (+ Zr b_region) + e, b ~ N(0, sigma_b^2 I_40), b_region ~ N(0, sigma_region^2 I_8), e ~",
    "N(0, sigma^2 I) (gaussian); count ~ Poisson(exp(X beta + W b)) (poisson). X = [1, x]. W (n x 40): W[i, j] =",
    "sum over k in {1, 2} with s_ik = level j of w_ik, levels = sort(union(s1, s2)) = S01..S40; w_ik = 1/2",
    "(mm(s1, s2)), w_k / (w1 + w2) (weights = cbind(w1, w2), scale = TRUE) or w_k (scale = FALSE); rows with",
    "s1 == s2 have a single entry, the two weights summed. Fitted as lme4's (1 | s1) (s1 a factor with levels",
    "S01..S40) with that term's Zt block replaced by t(W). theta = sigma_b / sigma (gaussian), sigma_b (poisson);",
    "ranef(fit)$s1 are the school effects b."),
  data = list(file = "mm_sim.csv", nrow = nrow(d), columns = arr(names(D0)),
              column_types = list(y = "double", count = "integer", x = "double", s1 = "text", s2 = "text",
                                  w1 = "integer (months, 1..12)", w2 = "integer (months, 1..12)", region = "text"),
              factor_levels = list(schools = arr(LV), region = arr(REGIONS)),
              rows_s1_equals_s2 = n_same,
              truth = list(b = arr(b_true), region = arr(r_true),
                           gaussian = list(sigma_b = 0.8, sigma_region = 0.5, sigma = 0.6, fixef = arr(c(1, 0.5))),
                           poisson = list(sigma_b = 0.56, fixef = arr(c(0.3, 0.3)), b = arr(0.7 * b_true)),
                           note = paste("b (level order S01..S40) and region (R1..R8) as simulated; y used the",
                                        "scaled months weights and the region effects; the poisson linear predictor",
                                        "uses 0.7 * b with equal weights and no region effect"))),
  tolerances = modular_tolerances(TIGHT_LMER_TEXT, TIGHT_GLMER_TEXT, "as known_cov_references.R"),
  reproducibility = paste(
    "reruns are byte-identical (CSV and JSON; md5 sums compared over 13 runs with ASLR on and one under setarch",
    "-R, all identical), so the script runs as it is (no setarch re-run as in smooth_references.R).",
    "Compare on other machines at the optimiser's accuracy, not bit for bit."),
  machinery_check = machinery_check,
  cases = cases,
  failures = if (length(failures)) failures else NULL)
jpath <- file.path(OUT, "mm_references.json")
write_json_file(top, jpath)
## read back: valid JSON, numbers exact
back <- fromJSON(jpath, simplifyVector = FALSE)
for (cid in intersect(MAIN, names(cases))) {
  r0 <- cases[[cid]]$results; r1 <- back$cases[[cid]]$results
  stopifnot(identical(r1$logLik, r0$logLik), identical(r1$sigma_b, r0$sigma_b),
            identical(as.numeric(unlist(r1$theta$values)), as.numeric(r0$theta$values)),
            identical(as.numeric(unlist(r1$fixef$values)), as.numeric(r0$fixef$values)),
            identical(as.numeric(unlist(r1$fixef_se)), as.numeric(r0$fixef_se)),
            identical(as.numeric(unlist(r1$blups$values)), as.numeric(r0$blups$values)),
            identical(as.numeric(unlist(r1$fitted)), as.numeric(r0$fitted)),
            identical(as.numeric(unlist(r1$vcov)), as.numeric(t(r0$vcov))))
  if (!is.null(r0$region_blups))
    stopifnot(identical(r1$sigma_region, r0$sigma_region),
              identical(as.numeric(unlist(r1$region_blups$values)), as.numeric(r0$region_blups$values)))
}
stopifnot(identical(as.numeric(unlist(back$data$truth$b)), b_true))
cat("wrote", jpath, "(", file.size(jpath), "bytes )\n")

## ---------------------------------------------------------------- summary

options(width = 200)
cat("\n==== summary ====\n")
for (cid in intersect(MAIN, names(cases))) {
  r <- cases[[cid]]$results; dr <- cases[[cid]]$direct
  cat(sprintf("%-30s logLik %.10f  %s %.10f  sigma_b %.8f%s%s  theta %s  feval %d  |grad| %.1e\n", cid, r$logLik,
              if (!is.null(r$REMLcrit)) "REMLcrit" else "deviance",
              if (!is.null(r$REMLcrit)) r$REMLcrit else r$deviance, r$sigma_b,
              if (!is.null(r$sigma_region)) sprintf("  sigma_region %.8f", r$sigma_region) else "",
              if (!is.null(r$sigma)) sprintf("  sigma %.8f", r$sigma) else "",
              paste(sprintf("%.8f", unlist(r$theta$values)), collapse = ","),
              r$optinfo$feval, r$optinfo$max_abs_gradient))
  cat("   fixef (se):", paste(sprintf("%s=%.8f (%.8f)", unlist(r$fixef$names), unlist(r$fixef$values),
                                      unlist(r$fixef_se)), collapse = " "), "\n")
  cat("   b[1:5]:", sprintf("%.6f", unlist(r$blups$values)[1:5]), " fitted check:", r$fitted_check_max_abs_diff, "\n")
  cat(sprintf("   direct: logLik - lme4 %.3e (rel %.3e)  blups %.3e", dr$logLik_minus_lme4, dr$logLik_rel_diff,
              dr$blups_max_abs_diff))
  if (!is.null(dr$REMLcrit_minus_lme4)) cat(sprintf("  REMLcrit - lme4 %.3e", dr$REMLcrit_minus_lme4))
  if (!is.null(dr$region_blups_max_abs_diff)) cat(sprintf("  region blups %.3e", dr$region_blups_max_abs_diff))
  if (!is.null(dr$optim)) cat(sprintf("  fixef %.3e  se %.3e  optim gain %.3e  dsb %.2e dsigma %.2e%s (conv %d)",
                                      dr$fixef_max_abs_diff, dr$fixef_se_max_abs_diff, dr$optim$logLik_gain_vs_lme4,
                                      dr$optim$sigma_b_rel_diff, dr$optim$sigma_rel_diff,
                                      if (!is.null(dr$optim$sigma_region_rel_diff))
                                        sprintf(" dsreg %.2e", dr$optim$sigma_region_rel_diff) else "",
                                      dr$optim$convergence))
  if (!is.null(dr$components)) cat(sprintf("  ldL2 lme4 - direct %.3e  mu %.3e",
                                           dr$components$ldL2_lme4 - dr$components$ldL2_direct, dr$mu_max_abs_diff))
  cat("\n   warnings:", if (length(r$fit_warnings)) paste(unique(unlist(r$fit_warnings)), collapse = " | ") else "none",
      " messages:", if (length(r$fit_messages)) paste(unique(unlist(r$fit_messages)), collapse = " | ") else "none",
      " lme4 conv messages:", if (length(r$optinfo$lme4_messages)) paste(unlist(r$optinfo$lme4_messages),
                                                                        collapse = " | ") else "none", "\n")
}
if (length(failures)) { cat("\nFAILED cases:\n"); for (nm in names(failures)) cat(" ", nm, ":", failures[[nm]], "\n") } else cat("\nno failures\n")
