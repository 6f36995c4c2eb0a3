## gamm4 reference fits for FACTOR-BY smooths s(x, by = f) (one penalised smooth of x per level of the factor f, each
## with its own smoothing parameter, fitted by lme4 as gamm4 does), on simulated data with a level-specific smooth of
## x, level intercepts and a random intercept per group g. The companion of smooth_references.R (plain smooths), with
## the same machinery, tolerances and JSON conventions.
##
## Run from the repository root:   Rscript tests/data/r/smooth_by_references.R
## Writes tests/data/smooth_by_sim.csv (simulated; doubles as the shortest round-trip decimals, read back equal) and
## tests/data/smooth_by_references.json (all cases), and prints a summary. About 25 s. Reruns are byte-identical.
##
## Cases (each fitted with gamm4's default control as `results`, and refitted with tight tolerances as `tight`):
##   by_tp_gaussian  gamm4(y ~ f + s(x, by = f), random = ~(1 | g), data = d, REML = TRUE)      (thin plate, k = 10)
##   by_cr_gaussian  gamm4(y ~ f + s(x, by = f, bs = "cr", k = 6), random = ~(1 | g), data = d, REML = TRUE)
##   by_tp_poisson   gamm4(count ~ f + s(x, by = f), random = ~(1 | g), family = poisson, data = d)   (Laplace, glmer)
## The gaussian cases also carry mgcv's basis per level of f (smoothCon, the constraint, PredictMat, smooth2random)
## and a second opinion from mgcv::gam(..., method = "REML") with s(g, bs = "re"), the same model (also evaluated at
## gamm4's smoothing parameters: the same REML objective). Every case also has a `polish`: gamm4's own lme4 objective
## (rebuilt with gamm4's steps) minimised further by minqa::bobyqa from the tight fit (not a gamm4 call).
##
## Boundaries (by design of the simulation): level c's true smooth -(x - 0.5) is linear, i.e. in the null space, so in
## the gaussian cases its penalised variance is exactly 0 (theta 0; gamm4 then sets sp = 1e10, edf 1; mgcv's own REML
## stops at a large finite sp, hence its logLik ~5e-5 below gamm4's). In the poisson case levels b and c have no x
## effect at all, so their variances go to 0 as well; gamm4's Nelder_Mead stops short there (tight: sd ~1e-5 and a
## logLik 2.7e-7 below the optimum, the level-a smooth 1e-4 off), the polish reaches sd ~1e-8 (the boundary). Compare
## the poisson likelihood and level-a quantities with `polish`, the b / c smooth SDs with an absolute tolerance.
##
## How mgcv builds s(x, by = f) (mgcv 1.8-41 smoothCon; verified in `basis.constraint` and `basis.checks`):
##  1. the smooth of x is constructed ONCE on all rows, ignoring f: the unconstrained basis B (n x k; tp: k = 10,
##     cr: k = 6) and its penalty S0, exactly as for a plain s(x);
##  2. the penalty is scaled on that whole-data basis: S = S0 / S.scale, S.scale = norm(S0) / norm(B, "I")^2 (the
##     same S.scale as the plain s(x); not recomputed per level);
##  3. the sum-to-zero constraint is C = colMeans(B), computed on the WHOLE-DATA basis BEFORE the multiplication by the
##     level indicator (not per level, not after). It is absorbed with a Householder QR: qrc = qr(t(C)) (LINPACK
##     dqrdc2), Z = qr.Q(qrc, complete = TRUE)[, 2:k]; the constrained whole-data basis is B Z (columns sum to zero
##     over all rows), the penalty Z' S Z;
##  4. for each level l of f (levels(f) order; all levels, f is not ordered) the level smooth "s(x):f<l>" has model
##     matrix X_l = 1[f == l] * (B Z) (rows of other levels exactly 0) and the same penalty Z' S Z. X_l's columns
##     do NOT sum to zero (neither over all rows nor over level l's rows); its constant-within-level direction is not in
##     its span, so it is identifiable next to the level intercepts of the parametric `f` term. Computing the
##     constraint AFTER the multiplication (C_l = colMeans(1[f == l] * B)) gives a different basis (basis.constraint
##     records both: `before` reproduces smoothCon to rounding, `after` does not).
##  Prediction (PredictMat) at new x for level l: 1[f_new == l] * (B(x_new) Z), B(x_new) the unconstrained basis at
##  x_new.
##
## How gamm4 0.2-6 represents it (gamm4.setup + gamm4; verified in `basis.checks` against the mer's X and Z):
##  - each level smooth is a separate mgcv smooth, turned into a random effect by mgcv::smooth2random(sm, names, type =
##    2): ev = eigen(Z' S Z), U = ev$vectors, D = 1 / sqrt(c(ev$values[1:rank], rep(1, df - rank))); X_l U diag(D) =
##    cbind(Xr_l, Xf_l). U and D depend only on the penalty, so they are identical for all levels, and Xr_l = 1[f ==
##    l] * Xr, Xf_l = 1[f == l] * Xf with Xr, Xf the plain s(x)'s smooth2random columns (checked);
##  - fixed effects (lme4 names, in this order): X(Intercept), Xfb, Xfc (treatment contrasts of f), then for each level
##    in order the null-space columns "Xs(x):f<l>Fx1" (tp and cr, m = 2: 1 column per level after the constraint = the
##    linear direction of the plain smooth's Xf, times the level indicator);
##  - random effects: one lme4 term per level, each (1 | <name>) with its own variance, i.i.d. N(0, sigma2_l)
##    coefficients on the rank penalised columns Xr_l (tp: 8, cr: 4); names from mgcv's new.name: level a -> "Xr",
##    b -> "Xr.0", c -> "Xr.1" (cnms label "s(x):fa", ...), plus the (1 | g) intercept. lme4 orders the terms by
##    rev(order(number of levels)) (mkReTrms; g: 15 first), so the tied smooth terms come in REVERSE formula order:
##    VarCorr, theta and Z are ordered g, Xr.1 (c), Xr.0 (b), Xr (a) (see results.re_terms, which gives the mapping
##    term -> level and theta index explicitly);
##  - the gam object: coefficients (Intercept), fb, fc, s(x):fa.1..9, s(x):fb.1..9, s(x):fc.1..9 (tp), each level's
##    block = U (D * c(ranef(Xr_l), fixef(Fx_l))); sp["s(x):f<l>"] = scale / sigma2_l (scale = sigma^2 or 1).
##
## Tolerances. As smooth_references.R: gamm4 passes `control` on (an lmerControl's optCtrl to optimizeLmer, nloptwrap;
## a glmerControl's tolPwrss to mkGlmerDevfun and its optCtrl to both optimizeGlmer stages: stage 1 minqa::bobyqa,
## stage 2 lme4's Nelder_Mead). Nelder_Mead's binding stop is the absolute parameter tolerance `xt`, one entry per
## parameter: theta (4: g and the 3 level smooths) then beta (6: intercept, fb, fc, 3 Fx columns) = 10 here;
## tolPwrss = 1e-13 removes glmer's PIRLS bias. minqa's bobyqa warns "unused control arguments ignored" (kept).
##
## Reproducibility. As smooth_references.R: lme4's objective differs in its last bit between processes with ASLR on,
## so the script re-runs itself under `setarch -R` (ASLR off for that process only), which makes reruns on one machine
## byte-identical. Set SMOOTH_BY_REFERENCES_ASLR=keep to run it as it is (ASLR on); where `setarch -R` is not
## permitted it runs with ASLR on and says so.
##
## Number formatting, CSV writer and JSON conventions are in tests/data/r/reference_helpers.R, and so are the parts
## shared with smooth_references.R: the setarch re-run (aslr_off), the lme4 half of a fit's summary (lme4_fit_head,
## lme4_optinfo), the default / tight pair of fits of a case (tight_case, tight_stability) and the read-back checks.
##
## Tested with R 4.2.2, mgcv 1.8-41, gamm4 0.2-6, lme4 1.1-31, Matrix 1.5-3, minqa 1.2.5, nloptr 2.0.3,
## jsonlite 1.8.4 (Debian bookworm packages).

source(file.path("tests", "data", "r", "reference_helpers.R"))   # arr, mat, named, capture, parse_exact,
                                                                 # write_csv_exact, aslr_off, lme4 / gamm4 helpers

## ---------------------------------------------------------------- ASLR off (see the header)

ASLR <- aslr_off("SMOOTH_BY_REFERENCES_ASLR")   # $state: "off" (re-ran under setarch -R), "keep" or "unavailable"

OUT <- start_script(c("gamm4", "jsonlite"))   # gamm4 attaches Matrix, lme4, mgcv (and nlme); OUT = tests/data

## ---------------------------------------------------------------- data

set.seed(20261207)   # default RNG kinds (Mersenne-Twister, Inversion, Rejection)
n <- 450
f <- rep(c("a", "b", "c"), length.out = n)           # interleaved: a, b, c, a, b, c, ... (150 each)
x <- runif(n, 0, 1)
g <- sprintf("g%02d", rep(1:15, each = 30))          # 30 rows per group, 10 of each level of f
gi <- rep(1:15, each = 30)                           # group index of each row
b_g <- rnorm(15, 0, 0.4)                             # per group g01..g15
ALPHA <- c(a = 0, b = 0.5, c = -0.3)                 # level intercepts
smooth_true <- ifelse(f == "a", sin(2 * pi * x), ifelse(f == "b", 0.5 * x^2 * 3, -(x - 0.5)))
y <- smooth_true + unname(ALPHA[f]) + b_g[gi] + rnorm(n, 0, 0.3)
count <- rpois(n, exp(0.2 + 0.5 * sin(2 * pi * x) * (f == "a") + 0.3 * (f == "b")))
D0 <- data.frame(y = y, count = count, x = x, f = f, g = g, stringsAsFactors = FALSE)

csv_path <- file.path(OUT, "smooth_by_sim.csv")
write_csv_exact(D0, csv_path)
cat("wrote", csv_path, "(", nrow(D0), "rows ); read-back exact\n")

## The fits use the data re-read from the CSV (identical values; checked), f and g as factors (sorted levels).
d <- read.csv(csv_path, colClasses = c(y = "character", count = "integer", x = "character", f = "character",
                                       g = "character"))
d$y <- parse_exact(d$y); d$x <- parse_exact(d$x)
stopifnot(identical(d$y, D0$y), identical(d$count, D0$count), identical(d$x, D0$x), identical(d$f, D0$f),
          identical(d$g, D0$g))
d$f <- factor(d$f); d$g <- factor(d$g)
LEV <- levels(d$f)
stopifnot(identical(LEV, c("a", "b", "c")), identical(levels(d$g), sprintf("g%02d", 1:15)),
          all(table(d$f) == 150))

SIM_CODE <- paste(
  "set.seed(20261207); default RNG kinds. n = 450; f = rep(c('a', 'b', 'c'), length.out = n); x = runif(n, 0, 1);",
  "g = sprintf('g%02d', rep(1:15, each = 30)); b_g = rnorm(15, 0, 0.4) (levels g01..g15);",
  "smooth = ifelse(f == 'a', sin(2 * pi * x), ifelse(f == 'b', 0.5 * x^2 * 3, -(x - 0.5)));",
  "y = smooth + c(a = 0, b = 0.5, c = -0.3)[f] + b_g[g] + rnorm(n, 0, 0.3);",
  "count = rpois(n, exp(0.2 + 0.5 * sin(2 * pi * x) * (f == 'a') + 0.3 * (f == 'b'))) (no group effect).",
  "Columns y, count, x, f, g (f, g as strings; read as factors with sorted levels).")
DATA_PREP <- paste("d <- read.csv('tests/data/smooth_by_sim.csv'); d$f <- factor(d$f); d$g <- factor(d$g)",
                   "(the script parses the doubles with a correctly rounded parser; identical values)")

XG <- seq(0, 1, length = 21)
XG_CALL <- "xg <- seq(0, 1, length = 21)"
NEWDATA <- data.frame(x = rep(XG, length(LEV)), f = factor(rep(LEV, each = length(XG)), levels = LEV))
NEWDATA_CALL <- paste("nd <- data.frame(x = rep(xg, 3), f = factor(rep(c('a', 'b', 'c'), each = 21),",
                      "levels = c('a', 'b', 'c')))   # 63 rows: level a's 21 x values, then b's, then c's")
LINK_CALL <- 'predict(fit$gam, newdata = nd, type = "link", se.fit = TRUE)'
TERMS_CALL <- 'predict(fit$gam, newdata = nd, type = "terms", se.fit = TRUE)'

TIGHT_LMER <- "lmerControl(optCtrl = list(xtol_abs = 1e-12, ftol_abs = 1e-14, xtol_rel = 1e-12, ftol_rel = 1e-14))"
N_GLMER_PAR <- 10   # Nelder_Mead's parameters in stage 2: theta (g + 3 level smooths) then beta (6)
TIGHT_GLMER <- "glmerControl(tolPwrss = 1e-13, optCtrl = list(xt = rep(1e-10, 10), FtolAbs = 1e-14, maxfun = 1e5))"
## stability check of the tight Poisson fit: a second tight setting
TIGHT_GLMER_ALT <- "glmerControl(tolPwrss = 1e-12, optCtrl = list(xt = rep(1e-12, 10), FtolAbs = 1e-15, maxfun = 1e5))"

## ---------------------------------------------------------------- fit summaries

lev_label <- function(l) sprintf("s(x):f%s", l)   # mgcv's label of level l's smooth

## The level smooths of a fit, in levels(f) order: label, by level, lme4 term name (gamm4's sm$lmer.name).
level_smooths <- function(gm) {
  sms <- gm$smooth
  stopifnot(length(sms) == length(LEV),
            identical(vapply(sms, function(s) s$by.level, ""), LEV),
            identical(vapply(sms, function(s) s$label, ""), lev_label(LEV)),
            all(vapply(sms, function(s) length(s$lmer.name) == 1, TRUE)))
  data.frame(level = LEV, label = vapply(sms, function(s) s$label, ""),
             lmer_name = vapply(sms, function(s) s$lmer.name, ""), stringsAsFactors = FALSE)
}

## predict(type = "link", se.fit = TRUE) on the grid (intercept + f effect + the level's smooth).
grid_link <- function(gm) {
  p <- predict(gm, newdata = NEWDATA, type = "link", se.fit = TRUE)
  list(r_call = LINK_CALL, newdata = NEWDATA_CALL, x = arr(NEWDATA$x), f = arr(as.character(NEWDATA$f)),
       fit = arr(p$fit), se_fit = arr(p$se.fit),
       note = paste("type = 'link': (Intercept) + the f effect (fb, fc) + the row's level smooth s(x):f<l> (the",
                    "other levels' smooths are 0 there); population level (no g, gamm4's $gam has no random",
                    "intercept). se_fit from fit$gam$Vp (all coefficients, the intercept and f included)."))
}

## predict(type = "terms", se.fit = TRUE) on the grid: per level, its own smooth column on its own 21 rows.
smooth_grid <- function(gm) {
  p <- predict(gm, newdata = NEWDATA, type = "terms", se.fit = TRUE)
  cols <- colnames(p$fit)
  stopifnot(identical(cols, c("f", lev_label(LEV))))
  per <- lapply(LEV, function(l) {
    rows <- NEWDATA$f == l; cl <- lev_label(l)
    others <- setdiff(lev_label(LEV), cl)
    stopifnot(all(p$fit[rows, others] == 0), all(p$se.fit[rows, others] == 0))
    list(label = cl, fit = arr(p$fit[rows, cl]), se_fit = arr(p$se.fit[rows, cl]),
         f_term = unname(p$fit[rows, "f"][1]), f_term_se = unname(p$se.fit[rows, "f"][1]))
  })
  names(per) <- LEV
  list(r_call = TERMS_CALL, newdata = NEWDATA_CALL, x = arr(XG), columns = arr(cols),
       constant = unname(attr(p, "constant")), levels = per,
       note = paste("type = 'terms': levels.<l>.fit / se_fit = the column 's(x):f<l>' on level l's 21 grid rows (the",
                    "other smooth columns are exactly 0 on those rows; checked); f_term = the 'f' column there (the",
                    "centred parametric f effect, as predict.gam centres type = 'terms'), constant = attr(,",
                    "'constant'). The smooth column is the level smooth as built (whole-data centring, see",
                    "by_representation), not re-centred within its level. se_fit from fit$gam$Vp."))
}

## gamm4's map from the lme4 fit to the gam coefficients of each level smooth (as in gamm4's own code): b = c(ranef
## Xr_l[rind], fixef of s(x):f<l>Fx), b = trans.D * b, then trans.U %*% b.
coef_map_check <- function(fit) {
  cg <- unname(coef(fit$gam))
  d_max <- vapply(fit$gam$smooth, function(sm) {
    re <- as.numeric(ranef(fit$mer)[[sm$lmer.name]][[1]])
    fe <- unname(fixef(fit$mer))[sm$first.f.para:sm$last.f.para]
    b <- c(re[sm$rind], fe) * sm$trans.D
    if (!is.null(sm$trans.U)) b <- as.numeric(sm$trans.U %*% b)
    max(abs(b - cg[sm$first.para:sm$last.para]))
  }, 0)
  list(note = paste("per level l: coef(fit$gam)[s(x):f<l>] = trans.U %*% (trans.D * c(ranef(fit$mer)[[lmer_name]]",
                    "[rind], fixef(s(x):f<l>Fx1))), recomputed here; max_abs_diff against coef(fit$gam)"),
       max_abs_diff = named(setNames(d_max, lev_label(LEV))))
}

## The fit's summary: lme4_fit_head (the call, criteria, logLik, sigma), then the variances (by term and by level),
## the terms, theta, fixef, ranef, optinfo, the gam object's parts, fitted values and the grids.
fit_block <- function(fit, cap, call_text) {
  mer <- fit$mer; gm <- fit$gam
  gauss <- family(mer)$family == "gaussian"
  vars <- lme4_variances(mer)                                # 1 x 1 each: g, Xr.1, Xr.0, Xr (lme4's order)
  re <- ranef(mer)
  st <- summary(gm)$s.table; pt <- summary(gm)$p.table
  ls <- level_smooths(gm)
  cn <- getME(mer, "cnms"); th <- getME(mer, "theta")
  stopifnot(identical(names(cn), names(VarCorr(mer))), length(th) == length(cn))
  ## the lme4 terms, in lme4's order, with the level each smooth term belongs to
  re_terms <- lapply(seq_along(cn), function(i) {
    nm <- names(cn)[i]; k <- match(nm, ls$lmer_name)
    list(lmer_name = nm, cnms = cn[[i]], smooth_label = if (is.na(k)) NULL else ls$label[k],
         by_level = if (is.na(k)) NULL else ls$level[k],
         n_columns = as.numeric(diff(getME(mer, "Gp"))[i]), theta_index = i, theta_name = names(th)[i],
         variance = vars[[nm]], sd = sqrt(vars[[nm]]))
  })
  stopifnot(identical(vapply(re_terms[-1], function(t) t$cnms, ""), ls$label[match(names(cn)[-1], ls$lmer_name)]),
            names(cn)[1] == "g")
  sd_lev <- lapply(ls$lmer_name, function(nm) sqrt(vars[[nm]])); names(sd_lev) <- ls$level
  ranef_out <- lapply(names(re), function(nm) list(levels = arr(rownames(re[[nm]])), values = arr(re[[nm]][[1]])))
  names(ranef_out) <- names(re)
  c(lme4_fit_head(mer, cap, call_text), list(
    varcorr = lme4_varcorr(vars, paste(
      "VarCorr(fit$mer) as variances by group, in lme4's order: g = the (1|g) intercept, Xr / Xr.0 / Xr.1 =",
      "gamm4's random effects for the penalised parts of s(x):fa / s(x):fb / s(x):fc (i.i.d. N(0, var)",
      "coefficients of each level's smooth2random Xr columns; see smooth_term_level and re_terms)",
      if (gauss) "; Residual = sigma(fit$mer)^2" else "")),
    smooth_term_level = setNames(as.list(ls$level), ls$lmer_name),
    smooth_sd_by_level = sd_lev,
    re_terms = re_terms,
    theta = named(th),
    fixef = named(fixef(mer)),
    ranef = ranef_out,
    optinfo = lme4_optinfo(mer, src = "fit$mer@optinfo", objective = "final stage's objective"),
    gam = list(
      edf = named(setNames(unname(summary(gm)$edf), rownames(st))),
      edf_per_coef = named(gm$edf),
      sp = if (!is.null(gm$sp)) named(gm$sp) else NULL,
      sp_note = paste("gamm4: sp['s(x):f<l>'] = scale / (VarCorr variance of level l's term) (scale = sigma^2, or 1",
                      "for poisson), on the scale of the level smooth's penalty S (S.scale included)"),
      sig2 = gm$sig2, scale_estimated = gm$scale.estimated,
      s_table = list(rows = arr(rownames(st)), columns = arr(colnames(st)), values = mat(st)),
      p_table = list(rows = arr(rownames(pt)), columns = arr(colnames(pt)), values = mat(pt)),
      coef = named(coef(gm)),
      Vp = mat(gm$Vp),
      coef_map_check = coef_map_check(fit)),
    fitted = list(
      mer = arr(fitted(mer)), gam = arr(gm$fitted.values),
      note = paste("training rows in data order, response scale. mer = fitted(fit$mer): conditional on all random",
                   "effects (the g intercept and the smooths' penalised parts); gam = fit$gam$fitted.values =",
                   "linkinv(predict(fit$gam, type = 'link')): the smooths in full, WITHOUT the g intercept.")),
    grid_link = grid_link(gm),
    smooth_grid = smooth_grid(gm)))
}

## ---------------------------------------------------------------- basis (mgcv) per level and gamm4's columns

## plain_spec: the same smooth without `by` (s(x) / s(x, bs = "cr", k = 6)); by_spec: with by = f.
basis_block <- function(by_spec, plain_spec, fit) {
  sms <- smoothCon(eval(parse(text = by_spec)), data = d, absorb.cons = TRUE)
  stopifnot(length(sms) == length(LEV), identical(vapply(sms, function(s) s$by.level, ""), LEV))
  ## the whole-data smooth: unconstrained (penalty scaled, and unscaled), and constrained
  raw <- smoothCon(eval(parse(text = plain_spec)), data = d, absorb.cons = FALSE)[[1]]
  raw0 <- smoothCon(eval(parse(text = plain_spec)), data = d, absorb.cons = FALSE, scale.penalty = FALSE)[[1]]
  plain <- smoothCon(eval(parse(text = plain_spec)), data = d, absorb.cons = TRUE)[[1]]
  B <- raw$X; k <- ncol(B)
  stopifnot(identical(raw$X, raw0$X), identical(raw$C, matrix(colMeans(B), 1, k)))
  C_whole <- colMeans(B)
  qrc <- qr(t(raw$C))
  Zc <- qr.Q(qrc, complete = TRUE)[, 2:k, drop = FALSE]
  absorb <- function(M, q) t(qr.qty(q, t(M)))[, 2:k, drop = FALSE]   # mgcv's own arithmetic (smoothCon)
  ## PredictMat's arithmetic is not smoothCon's: compare the grid with a whole-data basis evaluated at the grid
  Bg <- PredictMat(raw, data.frame(x = XG))
  plain_ra <- smooth2random(plain, names(d), type = 2)
  Xmer <- getME(fit$mer, "X"); Zmer <- as.matrix(getME(fit$mer, "Z")); Gp <- getME(fit$mer, "Gp")
  cn <- names(getME(fit$mer, "cnms"))
  used <- names(d)                 # gamm4 passes the model frame's names; the new.name results are the same here
  scale_whole <- norm(raw0$S[[1]]) / norm(B, "I")^2

  per <- list(); ck <- list()
  for (j in seq_along(LEV)) {
    l <- LEV[j]; sm <- sms[[j]]; ind <- as.numeric(d$f == l)
    ra <- smooth2random(sm, used, type = 2)
    used <- c(used, names(ra$rand))
    lmer_name <- names(ra$rand)
    stopifnot(length(lmer_name) == 1, identical(lmer_name, fit$gam$smooth[[j]]$lmer.name))
    ## the constraint: before (whole data, mgcv) vs after (on the level-masked basis)
    Xb <- absorb(ind * B, qrc)
    qrc_after <- qr(t(matrix(colMeans(ind * B), 1, k)))
    Xa <- absorb(ind * B, qrc_after)
    Pg <- PredictMat(sm, data.frame(x = XG, f = factor(l, levels = LEV)))
    Pg_other <- PredictMat(sm, data.frame(x = XG, f = factor(LEV[LEV != l][1], levels = LEV)))
    Pd <- PredictMat(sm, d)
    iZ <- which(cn == lmer_name)
    Zl <- Zmer[, (Gp[iZ] + 1):Gp[iZ + 1], drop = FALSE]
    fx_col <- sprintf("X%sFx%d", sm$label, seq_len(ncol(as.matrix(ra$Xf))))
    XU <- sm$X %*% ra$trans.U %*% diag(ra$trans.D)
    stopifnot(identical(as.numeric(ra$rind), as.numeric(seq_len(ncol(ra$rand[[1]])))), all(fx_col %in% colnames(Xmer)))
    per[[l]] <- list(
      label = sm$label, by_level = sm$by.level, lmer_name = lmer_name, fixef_names = arr(fx_col),
      rank = sm$rank, df = sm$df, null_space_dim = sm$null.space.dim,
      X_dim = arr(dim(sm$X)), X = mat(sm$X),
      S = mat(sm$S[[1]]), S_scale = sm$S.scale,
      PredictMat_grid = mat(Pg),
      smooth2random = list(
        Xf_dim = arr(dim(as.matrix(ra$Xf))), Xf = mat(ra$Xf),
        Xr_dim = arr(dim(ra$rand[[1]])), Xr = mat(ra$rand[[1]]),
        rand_names = arr(names(ra$rand)), s_label = attr(ra$rand[[1]], "s.label"),
        rind = arr(as.numeric(ra$rind)), rinc = arr(as.numeric(ra$rinc)), pen_ind = arr(as.numeric(ra$pen.ind)),
        trans_D = arr(ra$trans.D), trans_U = mat(ra$trans.U), fixed = ra$fixed,
        reconstruction_max_abs_diff = max(abs(XU - cbind(ra$rand[[1]], ra$Xf)))))
    ck[[l]] <- list(
      X_vs_constraint_before_max_abs_diff = max(abs(sm$X - Xb)),
      X_vs_constraint_after_max_abs_diff = max(abs(sm$X - Xa)),
      X_vs_indicator_times_plain_X_max_abs_diff = max(abs(sm$X - ind * plain$X)),
      X_other_level_rows_max_abs = max(abs(sm$X[ind == 0, ])),
      X_colsum_all_rows_max_abs = max(abs(colSums(sm$X))),
      X_colsum_level_rows_max_abs = max(abs(colSums(sm$X[ind == 1, ]))),
      after_X_colsum_level_rows_max_abs = max(abs(colSums(Xa[ind == 1, ]))),
      S_identical_to_plain = identical(sm$S[[1]], plain$S[[1]]),
      S_scale_identical_to_plain = identical(sm$S.scale, plain$S.scale),
      S_scale_rel_diff_vs_whole_data = sm$S.scale / scale_whole - 1,
      S_scale_rel_diff_vs_level_masked = sm$S.scale / (norm(raw0$S[[1]]) / norm(ind * B, "I")^2) - 1,
      X_vs_PredictMat_data_max_abs_diff = max(abs(sm$X - Pd)),
      PredictMat_grid_vs_plain_basis_max_abs_diff = max(abs(Pg - absorb(Bg, qrc))),
      PredictMat_grid_other_level_max_abs = max(abs(Pg_other)),
      gamm4_smooth_vs_smoothCon_max_abs_diff = max(abs(PredictMat(fit$gam$smooth[[j]], d) - Pd)),
      trans_U_identical_to_plain = identical(ra$trans.U, plain_ra$trans.U),
      trans_D_identical_to_plain = identical(ra$trans.D, plain_ra$trans.D),
      Xr_vs_indicator_times_plain_Xr_max_abs_diff = max(abs(ra$rand[[1]] - ind * plain_ra$rand$Xr)),
      Xf_vs_indicator_times_plain_Xf_max_abs_diff = max(abs(ra$Xf - ind * plain_ra$Xf)),
      smooth2random_Xf_vs_mer_X_max_abs_diff = max(abs(ra$Xf - Xmer[, fx_col])),
      smooth2random_Xr_vs_mer_Z_max_abs_diff = max(abs(ra$rand[[1]] - Zl)))
  }
  v_before <- vapply(ck, function(c) c$X_vs_constraint_before_max_abs_diff, 0)
  v_after <- vapply(ck, function(c) c$X_vs_constraint_after_max_abs_diff, 0)
  stopifnot(all(v_before < 1e-12), all(v_after > 1e-3))
  stopifnot(all(vapply(ck, function(c) c$S_identical_to_plain && c$S_scale_identical_to_plain &&
                                         c$trans_U_identical_to_plain && c$trans_D_identical_to_plain, TRUE)),
            all(vapply(ck, function(c) c$smooth2random_Xf_vs_mer_X_max_abs_diff == 0 &&
                                         c$smooth2random_Xr_vs_mer_Z_max_abs_diff == 0, TRUE)))

  out <- list(
    r_calls = list(smoothCon = sprintf("sms <- smoothCon(%s, data = d, absorb.cons = TRUE)   # one smooth per level",
                                       by_spec),
                   unconstrained = sprintf("raw <- smoothCon(%s, data = d, absorb.cons = FALSE)[[1]]", plain_spec),
                   constrained_whole_data = sprintf("plain <- smoothCon(%s, data = d, absorb.cons = TRUE)[[1]]",
                                                    plain_spec),
                   PredictMat = "PredictMat(sms[[j]], data.frame(x = xg, f = factor(level_j, levels = levels(d$f))))",
                   smooth2random = paste("ra_j <- mgcv::smooth2random(sms[[j]], used, type = 2); used <- c(used,",
                                         "names(ra_j$rand))   # used starts as names(d); j = a, b, c in turn"),
                   grid = XG_CALL),
    class = arr(class(sms[[1]])), labels = arr(vapply(sms, function(s) s$label, "")), by_levels = arr(LEV),
    bs_dim = sms[[1]]$bs.dim, null_space_dim = sms[[1]]$null.space.dim, rank = sms[[1]]$rank, df = sms[[1]]$df,
    unconstrained = list(
      X_dim = arr(dim(B)), X = mat(B),
      S = mat(raw$S[[1]]), S_unscaled = mat(raw0$S[[1]]), S_scale = raw$S.scale,
      S_scale_formula = "norm(S_unscaled) / norm(X, 'I')^2 (Frobenius norm of S over the squared max abs row sum of X)",
      S_scale_recomputed = scale_whole,
      PredictMat_grid = mat(Bg),
      note = paste("the smooth of x on ALL rows, ignoring f: smoothCon(", plain_spec, ", absorb.cons = FALSE): X =",
                   "B (n x k, no constraint, no by), S = its scaled penalty (S_unscaled / S_scale). Every level's",
                   "basis is built from this one.")),
    constraint = list(
      computed_on = "whole_data_before_by",
      statement = paste("mgcv computes the sum-to-zero constraint ONCE, on the whole-data basis B BEFORE the",
                        "multiplication by the level indicator: C = colMeans(B) (all n rows, all levels), Z =",
                        "qr.Q(qr(t(C)), complete = TRUE)[, 2:k]; level l's columns are 1[f == l] * (B Z). A",
                        "constraint computed AFTER the multiplication (colMeans(1[f == l] * B), per level) does",
                        "not reproduce mgcv (checks: X_vs_constraint_before / _after). The level columns therefore",
                        "do not sum to zero, neither over all rows nor over the level's rows."),
      C = arr(C_whole),
      C_note = "C = colMeans(B) = raw$C (checked identical); mgcv's qrc = qr(t(C)) (R's default LINPACK QR)",
      qrc_qr = arr(qrc$qr), qrc_qraux = qrc$qraux,
      Z = mat(Zc),
      Z_note = paste("k x (k - 1) null-space basis of C: qr.Q(qrc, complete = TRUE)[, 2:k] (a Householder",
                     "reflection: H = I - v v' / qraux with v = qrc_qr (first entry replaced by qraux);",
                     "columns 2..k). mgcv applies it as t(qr.qty(qrc, t(X)))[, 2:k] (same to rounding)."),
      B_Z_vs_plain_X_max_abs_diff = max(abs(B %*% Zc - plain$X)),
      before_max_abs_diff = named(v_before), after_max_abs_diff = named(v_after)),
    levels = per,
    checks = c(ck, list(note = paste(
      "per level: X vs the constraint computed before (whole data) / after (level-masked) the by multiplication;",
      "X = indicator * plain X (the constrained whole-data basis); rows of other levels exactly 0; column sums over",
      "all rows and over the level's rows (not 0: whole-data centring) and, for contrast, those of the `after`",
      "basis over its level's rows (0); S and S.scale identical to the plain smooth's and S.scale = the whole-data",
      "formula (rel diff 0), not the level-masked one; X vs PredictMat(sm, d) (rounding); the grid PredictMat vs",
      "the unconstrained grid basis times Z; PredictMat for another level's rows = 0; gamm4's own smooth predicts",
      "the same basis; smooth2random's trans.U / trans.D identical to the plain smooth's and Xr / Xf =",
      "indicator * the plain smooth's Xr / Xf; Xf / Xr exactly the mer's X column(s) and Z columns of the level's",
      "term (fit = results)."))),
    smooth2random_note = paste(
      "type = 2 (lme4 style), mgcv 1.8-41's smooth2random.mgcv.smooth per level: ev = eigen(S, symmetric = TRUE)",
      "(values decreasing, the last df - rank zero); trans.U = ev$vectors (signs as R's LAPACK gives them);",
      "trans.D = 1 / sqrt(c(ev$values[1:rank], rep(1, df - rank))); X %*% trans.U %*% diag(trans.D) = cbind(Xr,",
      "Xf): Xr its first `rank` columns (penalised; coefficients i.i.d. N(0, var of the level's term), penalty",
      "identity), Xf the rest (unpenalised -> fixed effects Xs(x):f<l>Fx1). The penalty is the same for every",
      "level, so trans.U / trans.D are too. Original coefficients: beta_l = trans.U %*% (trans.D * c(b_Xr_l[rind],",
      "beta_Xf_l))."))
  ## the construction on all rows, the same in every level smooth (tp: UZ, Xu, shift; cr: the knots xp and F)
  built <- if (inherits(raw, "tprs.smooth")) c("UZ", "Xu", "shift") else c("xp", "F")
  same <- all(vapply(sms, function(s) identical(unclass(s)[built], unclass(raw)[built]), TRUE))
  c(out, smooth_construction(raw, d$x, extra = list(same_as_by_smooths = same), note = list(
    cr = paste("cubic regression spline, built on all rows: knots at quantiles of the unique x of ALL rows (sm$xp,",
               "k = 6; identical in every level smooth), F maps the values at the knots to the second derivatives",
               "(natural spline). Level X = k - 1 = 5 columns."),
    tp = paste("thin plate (m = 2, d = 1), built on all rows: mgcv centres x by shift (the mean of all x), takes",
               "the unique values Xu (here all", length(unique(d$x)), "x values, n <= max.knots = 2000; unique()",
               "order, shifted), and UZ ((nu + M) x k, M = 2) maps the radial and polynomial parts to the truncated",
               "eigen-basis (identical in every level smooth: same_as_by_smooths). Eigenvectors are defined up to",
               "sign: compare column spaces, not columns. Level X = k - 1 = 9 columns."))))
}

## ---------------------------------------------------------------- polish: gamm4's lme4 objective, optimised further

## gamm4 0.2-6's lme4 objective for `formula` / `random`, rebuilt with gamm4's own steps (interpret.gam, the model
## frame, gamm4.setup, the lme4 formula y ~ X - 1 + (1|Xr) + (1|Xr.0) + (1|Xr.1) + (1 | g), Zt rows of each smooth
## term replaced by its smooth2random Xr, mkLmerDevfun / mkGlmerDevfun; glmer: stage 1 optimizeGlmer then
## updateGlmerDevfun, as gamm4 does). Returns the devfun (lmer: REML criterion of theta; glmer stage 2: -2 Laplace
## logLik of c(theta, beta)), b (glFormula / lFormula's list) and the stage-1 capture.
gamm4_devfun <- function(formula, random, family, REML, control) {
  gp <- interpret.gam(formula)
  mf <- model.frame(as.formula(paste(paste(deparse(gp$fake.formula, backtick = TRUE), collapse = ""), "+",
                                     paste(all.vars(random), collapse = "+"))), data = d, drop.unused.levels = TRUE)
  pmf <- model.frame(gp$pf, data = d, drop.unused.levels = TRUE)
  G <- gamm4:::gamm4.setup(gp, pterms = attr(pmf, "terms"), data = mf, knots = NULL)
  yname <- mgcv:::new.name("y", names(mf)); Xname <- mgcv:::new.name("X", names(mf))
  mf[[yname]] <- G$y; mf[[Xname]] <- G$X
  fo <- paste(yname, "~", Xname, "-1")
  for (nm in names(G$random)) {
    mf[[nm]] <- factor(rep(1:ncol(G$random[[nm]]), length = nrow(G$random[[nm]])))
    fo <- paste(fo, "+ (1|", nm, ")")
  }
  fo <- as.formula(paste(fo, "+", substring(paste(deparse(random, backtick = TRUE), collapse = ""), first = 2)))
  linear <- family$family == "gaussian" && family$link == "identity"
  b <- if (linear) lFormula(fo, data = mf, weights = G$w, REML = REML, control = control)
       else glFormula(fo, data = mf, family = family, weights = G$w, control = control)
  tn <- names(b$reTrms$cnms)
  for (nm in names(G$random)) {
    k <- which(tn == nm); ii <- (b$reTrms$Gp[k] + 1):b$reTrms$Gp[k + 1]
    b$reTrms$Zt[ii, ] <- as(t(G$random[[nm]]), "dgCMatrix")
    b$reTrms$cnms[[k]] <- attr(G$random[[nm]], "s.label")
  }
  b$control <- control; b$verbose <- 0; b$start <- NULL
  st1 <- NULL
  if (linear) devfun <- do.call(mkLmerDevfun, b)
  else {
    devfun <- do.call(mkGlmerDevfun, b)
    st1 <- capture(optimizeGlmer(devfun, control = control$optCtrl))
    devfun <- updateGlmerDevfun(devfun, b$reTrms)
  }
  list(devfun = devfun, b = b, linear = linear, stage1 = st1)
}

POLISH_CTRL <- "list(rhobeg = 1e-3, rhoend = 1e-12, maxfun = 1e5)"

## gamm4's map from an lme4 fit to the gam coefficients (parametric, then each level's block), with gm's smooths.
gam_coef <- function(mer, gm) {
  bf <- unname(fixef(mer)); br <- ranef(mer)
  p <- bf[seq_len(gm$nsdf)]
  for (sm in gm$smooth) {
    b <- c(as.numeric(br[[sm$lmer.name]][[1]])[sm$rind], bf[sm$first.f.para:sm$last.f.para]) * sm$trans.D
    p <- c(p, as.numeric(sm$trans.U %*% b))
  }
  setNames(p, names(coef(gm)))
}

## minqa::bobyqa on that objective from the tight fit's optimum (lmer: theta; glmer: theta and beta), bounds as
## lme4's (theta >= 0 where lme4 has it), then lme4's mkMerMod at the polished point.
polish_block <- function(formula, family, REML, control_text, fit_tight) {
  dv <- gamm4_devfun(formula, ~(1 | g), family, REML, eval(parse(text = control_text)))
  mt <- fit_tight$mer
  th <- getME(mt, "theta"); be <- fixef(mt)
  p0 <- if (dv$linear) unname(th) else unname(c(th, be))
  lower <- c(dv$b$reTrms$lower, rep(-Inf, length(p0) - length(th)))
  f0 <- dv$devfun(p0)
  crit_tight <- -2 * as.numeric(logLik(mt))
  o <- capture(minqa::bobyqa(p0, dv$devfun, lower = lower, control = eval(parse(text = POLISH_CTRL))))
  op <- o$value
  fval <- dv$devfun(op$par)                                  # leaves the objective's state at the polished point
  pm <- mkMerMod(environment(dv$devfun), list(par = op$par, fval = fval, conv = op$ierr, feval = op$feval,
                                              message = op$msg), dv$b$reTrms, fr = dv$b$fr)
  stopifnot(identical(names(getME(pm, "cnms")), names(getME(mt, "cnms"))),
            identical(names(fixef(pm)), names(fixef(mt))))
  vc <- VarCorr(pm); ls <- level_smooths(fit_tight$gam)
  sds <- lapply(vc, function(v) sqrt(as.numeric(v)))
  sd_lev <- lapply(ls$lmer_name, function(nm) sds[[nm]]); names(sd_lev) <- ls$level
  ll <- as.numeric(logLik(pm))
  gt <- fit_tight$gam
  Lp <- predict(gt, newdata = NEWDATA, type = "lpmatrix")
  cp <- gam_coef(pm, gt)
  link_tight <- as.numeric(predict(gt, newdata = NEWDATA, type = "link"))
  list(
    note = paste("Polish (not a gamm4 call): gamm4's own lme4 objective, rebuilt with gamm4 0.2-6's steps (see the",
                 "script: gamm4_devfun; ", if (dv$linear) "lmer: the REML criterion of theta" else
                   "glmer stage 2: -2 Laplace logLik of (theta, beta), tolPwrss as the tight control",
                 "), minimised by minqa::bobyqa(", POLISH_CTRL, ") from the tight fit's",
                 if (dv$linear) "theta" else "(theta, beta)", "with lme4's bounds (theta >= 0); lme4::mkMerMod at",
                 "the result gives logLik, fixef, VarCorr. objective_at_tight_minus_tight: the rebuilt objective at",
                 "the tight fit's parameters minus the tight fit's -2 logLik (0: the same objective)."),
    control = control_text, bobyqa_control = POLISH_CTRL,
    stage1_warnings = if (is.null(dv$stage1)) NULL else arr(dv$stage1$warnings),
    bobyqa_warnings = arr(o$warnings), bobyqa_ierr = op$ierr, bobyqa_message = op$msg, bobyqa_feval = op$feval,
    objective_at_tight_minus_tight = f0 - crit_tight,
    objective = fval,
    logLik = ll, logLik_gain_vs_tight = ll - as.numeric(logLik(mt)),
    REMLcrit = if (dv$linear) REMLcrit(pm) else NULL,
    sigma = if (dv$linear) sigma(pm) else NULL,
    theta = named(getME(pm, "theta")),
    fixef = named(fixef(pm)),
    varcorr_sd = sds, smooth_sd_by_level = sd_lev,
    gam_coef = named(cp),
    grid_link_fit = arr(as.numeric(Lp %*% cp)),
    fitted_mer = arr(fitted(pm)),
    gam_note = paste("gam_coef: gamm4's map (coef_map_check) applied to the polished lme4 fit (the tight fit's",
                     "smooths' trans.U / trans.D); grid_link_fit = predict(fit$gam, nd, type = 'lpmatrix') %*%",
                     "gam_coef (the grid of grid_link; no se: gamm4's Vp is not recomputed); fitted_mer =",
                     "fitted() of the polished lme4 fit (response scale, all random effects). The same map at the",
                     "tight fit reproduces its coef and grid link (checks)."),
    checks = list(gam_coef_map_at_tight_vs_coef_max_abs_diff = max(abs(gam_coef(mt, gt) - coef(gt))),
                  lpmatrix_at_tight_vs_predict_link_max_abs_diff =
                    max(abs(as.numeric(Lp %*% gam_coef(mt, gt)) - link_tight))),
    vs_tight = list(theta_max_abs_diff = max(abs(getME(pm, "theta") - th)),
                    fixef_max_abs_diff = max(abs(fixef(pm) - be)),
                    sigma_rel_diff = if (dv$linear) sigma(pm) / sigma(mt) - 1 else NULL,
                    grid_link_fit_max_abs_diff = max(abs(as.numeric(Lp %*% cp) - link_tight)),
                    fitted_mer_max_abs_diff = max(abs(fitted(pm) - fitted(mt)))))
}

## ---------------------------------------------------------------- second opinion: mgcv::gam REML (gaussian)

gam_check <- function(by_spec, fit_tight) {
  call_text <- sprintf("gam(y ~ f + %s + s(g, bs = \"re\"), data = d, method = \"REML\")", by_spec)
  cap <- capture(eval(parse(text = call_text)))
  G <- cap$value
  vcm <- fit_tight$mer
  labs <- lev_label(LEV)
  nd <- cbind(NEWDATA, g = factor("g01", levels = levels(d$g)))
  pl <- predict(G, newdata = nd, type = "link", se.fit = TRUE, exclude = "s(g)")
  pt <- predict(G, newdata = nd, type = "terms", se.fit = TRUE)
  pl4 <- predict(fit_tight$gam, newdata = NEWDATA, type = "link", se.fit = TRUE)
  pt4 <- predict(fit_tight$gam, newdata = NEWDATA, type = "terms", se.fit = TRUE)
  own <- function(P) unlist(lapply(LEV, function(l) P[NEWDATA$f == l, lev_label(l)]))
  edf_l <- vapply(G$smooth[seq_along(LEV)], function(s) sum(G$edf[s$first.para:s$last.para]), 0)
  stopifnot(identical(vapply(G$smooth[seq_along(LEV)], function(s) s$label, ""), labs))
  ls <- level_smooths(fit_tight$gam)
  var_lev <- vapply(ls$lmer_name, function(nm) as.numeric(VarCorr(vcm)[[nm]]), 0)
  ## mgcv's REML score at gamm4's (tight) smoothing parameters: the same objective
  sp4 <- c(fit_tight$gam$sp[labs], "s(g)" = sigma(vcm)^2 / as.numeric(VarCorr(vcm)$g))
  call_sp <- sub(")$", ", sp = sp4)", call_text)
  cap4 <- capture(eval(parse(text = call_sp)))
  G4 <- cap4$value
  at4 <- list(r_call = call_sp,
              sp4 = named(sp4), fit_warnings = arr(cap4$warnings),
              note = paste("sp4 = c(fit$gam$sp (gamm4: scale / variance; 1e10 where the variance is 0), s(g) =",
                           "sigma^2 / var_g) of the tight fit: mgcv's restricted log-likelihood and coefficients",
                           "there"),
              restricted_logLik = -as.numeric(G4$gcv.ubre),
              logLik_diff = -as.numeric(G4$gcv.ubre) - as.numeric(logLik(vcm)),
              sig2_rel_diff = G4$sig2 / sigma(vcm)^2 - 1,
              coef_max_abs_diff = max(abs(coef(G4)[seq_along(coef(fit_tight$gam))] - coef(fit_tight$gam))))
  list(
    r_call = call_text, fit_warnings = arr(cap$warnings),
    note = paste("The same model by mgcv's REML (random intercept as a penalised s(g, bs = 're') smooth):",
                 "compare with the `tight` gamm4 fit. -gcv.ubre is mgcv's restricted log-likelihood;",
                 "sigma2_g = sig2 / sp['s(g)'], sigma2 of level l's smooth term = sig2 / sp['s(x):f<l>'] (on the",
                 "penalty's scale, as gamm4's VarCorr). link_fit: predict(type = 'link', exclude = 's(g)') on the",
                 "grid (newdata with g = 'g01', excluded); smooth_fit: each level's own term column on its rows",
                 "(levels a, b, c in turn)."),
    sp = named(G$sp), sig2 = G$sig2, sigma2_g = G$sig2 / G$sp[["s(g)"]],
    edf_by_level = named(setNames(edf_l, labs)),
    restricted_logLik = -as.numeric(G$gcv.ubre),
    link_fit = arr(pl$fit), link_se_fit = arr(pl$se.fit),
    smooth_fit = arr(own(pt$fit)), smooth_se_fit = arr(own(pt$se.fit)),
    vs_tight = list(
      logLik_diff = -as.numeric(G$gcv.ubre) - as.numeric(logLik(vcm)),
      sp_rel_diff = named(setNames(G$sp[labs] / fit_tight$gam$sp[labs] - 1, labs)),
      smooth_var_rel_diff = named(setNames((G$sig2 / G$sp[labs]) / var_lev - 1, labs)),
      sig2_rel_diff = G$sig2 / sigma(vcm)^2 - 1,
      sigma2_g_rel_diff = (G$sig2 / G$sp[["s(g)"]]) / as.numeric(VarCorr(vcm)$g) - 1,
      edf_diff = named(setNames(edf_l - unname(summary(fit_tight$gam)$edf), labs)),
      coef_fixed_max_abs_diff = max(abs(coef(G)[c("(Intercept)", "fb", "fc")] -
                                        coef(fit_tight$gam)[c("(Intercept)", "fb", "fc")])),
      link_fit_max_abs_diff = max(abs(pl$fit - pl4$fit)),
      link_se_fit_max_abs_diff = max(abs(pl$se.fit - pl4$se.fit)),
      smooth_fit_max_abs_diff = max(abs(own(pt$fit) - own(pt4$fit))),
      smooth_se_fit_max_abs_diff = max(abs(own(pt$se.fit) - own(pt4$se.fit)))),
    at_gamm4_sp = at4)
}

## ---------------------------------------------------------------- cases

cases <- list(); failures <- list(); fits <- list()   # fits: each case's two fits and its by_spec
GAUSSIAN <- c("by_tp_gaussian", "by_cr_gaussian")

## the link on the grid, b1 against b0 (tight_vs_default, tight_stability)
link_diff <- function(b1, b0)
  list(link_fit_max_abs_diff = max(abs(unlist(b1$grid_link$fit) - unlist(b0$grid_link$fit))))
## tight - default: edf, the link, each level's own smooth on the grid
tight_vs_default <- function(b1, b0) c(
  list(edf_max_abs_diff = max(abs(unlist(b1$gam$edf$values) - unlist(b0$gam$edf$values)))),
  link_diff(b1, b0),
  list(smooth_fit_max_abs_diff = max(vapply(LEV, function(l) max(abs(unlist(b1$smooth_grid$levels[[l]]$fit) -
                                                                       unlist(b0$smooth_grid$levels[[l]]$fit))), 0))))

run_case <- function(case_id, call_text, tight_ctl, by_spec, plain_spec, polish, basis = TRUE, notes = NULL) {
  res <- tryCatch({
    tc <- tight_case(case_id, call_text, tight_ctl, "smooth_by_sim.csv", DATA_PREP, fit_block, tight_vs_default,
                     notes)
    fits[[case_id]] <<- c(tc$fits, list(spec = by_spec))
    out <- tc$record
    out$polish <- or_error(polish_block(polish$formula, polish$family, polish$REML, tight_ctl, tc$fits$tight))
    if (basis) out$basis <- basis_block(by_spec, plain_spec, tc$fits$default)
    cases[[case_id]] <<- out
    "ok"
  }, error = function(e) { failures[[case_id]] <<- conditionMessage(e); paste("FAILED:", conditionMessage(e)) })
  cat(sprintf("%-15s %s\n", case_id, res))
}

run_case("by_tp_gaussian", "gamm4(y ~ f + s(x, by = f), random = ~(1 | g), data = d, REML = TRUE)", TIGHT_LMER,
         "s(x, by = f)", "s(x)", list(formula = y ~ f + s(x, by = f), family = gaussian(), REML = TRUE),
         notes = paste("thin plate regression spline per level of f (k = 10: 9 columns per level after the",
                       "whole-data sum-to-zero constraint; 1 unpenalised column per level -> fixed effects",
                       "Xs(x):faFx1, Xs(x):fbFx1, Xs(x):fcFx1; 8 penalised per level -> random effects Xr (a), Xr.0",
                       "(b), Xr.1 (c), each with its own variance). Use `tight`."))
run_case("by_cr_gaussian",
         'gamm4(y ~ f + s(x, by = f, bs = "cr", k = 6), random = ~(1 | g), data = d, REML = TRUE)', TIGHT_LMER,
         's(x, by = f, bs = "cr", k = 6)', 's(x, bs = "cr", k = 6)',
         list(formula = y ~ f + s(x, by = f, bs = "cr", k = 6), family = gaussian(), REML = TRUE),
         notes = paste("cubic regression spline per level of f, k = 6 (5 columns per level after the whole-data",
                       "constraint; 1 unpenalised -> Xs(x):f<l>Fx1, 4 penalised -> Xr / Xr.0 / Xr.1). Use `tight`."))
run_case("by_tp_poisson", "gamm4(count ~ f + s(x, by = f), random = ~(1 | g), family = poisson, data = d)",
         TIGHT_GLMER, "s(x, by = f)", "s(x)",
         list(formula = count ~ f + s(x, by = f), family = poisson(), REML = FALSE),
         basis = FALSE,
         notes = paste("Laplace (glmer, nAGQ = 1; gamm4 runs stage 1 (bobyqa, theta) and stage 2 (Nelder_Mead,",
                       "theta and beta)). The basis is by_tp_gaussian's (same x, f, same s(x, by = f)): see",
                       "cases.by_tp_gaussian.basis (checked: basis_same_as_by_tp_gaussian_max_abs_diff). The",
                       "simulated counts have no group effect, so the g variance may be at or near 0. deviance is",
                       "lme4's deviance(fit$mer) for a glmerMod (not -2 logLik; minus_two_logLik is). Use `tight`:",
                       "the default tolPwrss (1e-7) biases glmer's Laplace objective and Nelder_Mead's default xt",
                       "stops early (see tight.control_note)."))

## the Poisson tight-fit stability and the shared tp basis, the gaussian second opinion
if (!is.null(cases$by_tp_poisson)) {
  r0 <- cases$by_tp_poisson$results
  stopifnot(length(r0$theta$values) + length(r0$fixef$values) == N_GLMER_PAR)
  cases$by_tp_poisson$tight$control_note <- paste(
    "tolPwrss = 1e-13 removes the PIRLS bias of glmer's Laplace objective; xt = rep(1e-10, 10) (theta 4: g and",
    "the three level smooths; beta 6: intercept, fb, fc and the three Fx columns) tightens lme4's Nelder_Mead",
    "stop in stage 2 (its default xt = 5e-4 x initial step binds; FtolAbs / XtolRel alone change nothing);",
    "maxfun raised for safety. stage-1 minqa::bobyqa warns 'unused control arguments ignored' (xt, FtolAbs are",
    "not bobyqa controls); kept in fit_warnings. tight_stability: a second tight setting.")
  cases$by_tp_poisson$tight_stability <- tight_stability(cases$by_tp_poisson, TIGHT_GLMER_ALT, fit_block,
                                                          link_diff)
  if (!is.null(fits$by_tp_gaussian))
    cases$by_tp_poisson$basis_same_as_by_tp_gaussian_max_abs_diff <-
      max(vapply(seq_along(LEV), function(j)
        max(abs(PredictMat(fits$by_tp_poisson$default$gam$smooth[[j]], d) -
                PredictMat(fits$by_tp_gaussian$default$gam$smooth[[j]], d))), 0))
}

cases <- add_to_cases(cases, GAUSSIAN, "mgcv_gam_check", function(cid) gam_check(fits[[cid]]$spec, fits[[cid]]$tight))

## ---------------------------------------------------------------- JSON

by_representation <- list(
  smooth_labels = setNames(as.list(lev_label(LEV)), LEV),
  lmer_term_by_level = list(a = "Xr", b = "Xr.0", c = "Xr.1"),
  level_by_lmer_term = list(Xr = "a", Xr.0 = "b", Xr.1 = "c"),
  lme4_term_order = arr(c("g", "Xr.1", "Xr.0", "Xr")),
  fixef_names = list(
    by_tp_gaussian = if (!is.null(cases$by_tp_gaussian)) cases$by_tp_gaussian$results$fixef$names else NULL,
    by_cr_gaussian = if (!is.null(cases$by_cr_gaussian)) cases$by_cr_gaussian$results$fixef$names else NULL,
    by_tp_poisson = if (!is.null(cases$by_tp_poisson)) cases$by_tp_poisson$results$fixef$names else NULL),
  columns_per_level = list(tp_k10 = list(X = 9, fixed = 1, random = 8), cr_k6 = list(X = 5, fixed = 1, random = 4)),
  constraint = paste(
    "computed ONCE on the whole-data unconstrained basis B (all rows, before the multiplication by the level",
    "indicator): C = colMeans(B), Z = qr.Q(qr(t(C)), complete = TRUE)[, 2:k]; level l's model matrix is",
    "1[f == l] * (B Z) (rows of other levels exactly 0). Verified: computing it after the multiplication",
    "(per level) does not reproduce mgcv (cases.<gaussian>.basis.constraint)."),
  penalty = paste(
    "every level has the same penalty Z' S Z, S = S_unscaled / S.scale with S.scale = norm(S_unscaled) /",
    "norm(B, 'I')^2 computed on the whole-data B (the plain s(x)'s S.scale); one smoothing parameter per level."),
  fixed_columns = paste(
    "X(Intercept), Xfb, Xfc (treatment contrasts of the parametric f), then per level in levels(f) order",
    "'Xs(x):f<l>Fx1' = 1[f == l] * (the plain s(x)'s smooth2random Xf column, the linear null-space direction)."),
  random_terms = paste(
    "one lme4 term per level, (1 | Xr) for a, (1 | Xr.0) for b, (1 | Xr.1) for c (mgcv::new.name; cnms labels",
    "'s(x):fa', 's(x):fb', 's(x):fc'), each with its own variance: i.i.d. N(0, sigma2_l) coefficients on Z columns",
    "1[f == l] * (the plain s(x)'s smooth2random Xr columns); plus (1 | g). lme4 sorts the terms by number of",
    "levels, lme4's mkReTrms ord = rev(order(nl)) (g: 15 levels, each smooth term: rank levels), so ties come in",
    "reverse formula order: g, Xr.1, Xr.0, Xr (VarCorr, theta, ranef and Z follow this order)."),
  gam_coefficients = paste(
    "fit$gam coefficients: (Intercept), fb, fc, then per level s(x):f<l>.1 .. .(k-1) in the constrained basis of",
    "basis.levels.<l>.X: beta_l = trans.U %*% (trans.D * c(ranef(Xr_l), fixef(Fx_l))); sp['s(x):f<l>'] = scale /",
    "sigma2_l."))

top <- list(
  description = paste("gamm4 reference fits of factor-by smooths s(x, by = f) (mgcv basis per level, each level's",
                      "smooth a random effect with its own variance in lme4) on simulated data: thin plate and",
                      "cubic regression smooths (gaussian, REML) and a thin plate factor-by smooth with a poisson",
                      "response (Laplace)."),
  script = "tests/data/r/smooth_by_references.R", versions = gamm4_versions(), simulation = SIM_CODE,
  data = list(file = "smooth_by_sim.csv", nrow = nrow(d), columns = arr(names(d)),
              factor_levels = list(f = arr(levels(d$f)), g = arr(levels(d$g))),
              truth = list(b_g = arr(b_g), sigma = 0.3, sd_g = 0.4, level_intercepts = as.list(ALPHA),
                           level_smooths = list(a = "sin(2 * pi * x)", b = "0.5 * x^2 * 3", c = "-(x - 0.5)"),
                           gaussian_mean = "smooth_f(x) + level_intercept[f] + b_g[g]",
                           poisson_log_mean = "0.2 + 0.5 * sin(2 * pi * x) * (f == 'a') + 0.3 * (f == 'b')")),
  grid = list(r_call = XG_CALL, x = arr(XG), newdata = NEWDATA_CALL,
              newdata_x = arr(NEWDATA$x), newdata_f = arr(as.character(NEWDATA$f))),
  by_representation = by_representation,
  tolerances = paste(
    "results: gamm4's defaults (lmer: nloptwrap, lme4's default tolerances; glmer: tolPwrss 1e-7, stage 1",
    "bobyqa, stage 2 Nelder_Mead). tight: gaussian", TIGHT_LMER, "(the repository's lme4 tight setting);",
    "poisson", TIGHT_GLMER, "(see cases.by_tp_poisson.tight.control_note). Compare with `tight`; for the",
    "poisson case's likelihood and level-a smooth use `polish` (tight stops 2.7e-7 short in logLik there)."),
  boundaries = paste(
    "gaussian: level c's true smooth is linear (in the null space), so its penalised variance is exactly 0",
    "(lme4 theta 0, gamm4 sp 1e10, edf 1). poisson: levels b and c have no x effect, their variances go to 0",
    "(tight ~1e-5 in sd, polish ~1e-8). mgcv's own REML stops at a large finite sp for level c (gaussian),",
    "hence mgcv_gam_check.vs_tight.logLik_diff ~ -5e-5; at gamm4's sp (at_gamm4_sp) the objectives agree."),
  reproducibility = list(
    aslr = aslr_words(ASLR),
    note = paste("as smooth_references.R: lme4's objective depends in its last bit on memory addresses (ASLR), so",
                 "with ASLR on the optimisers' paths and the reported optima differ slightly between runs; with",
                 "ASLR off reruns on one machine are byte-identical. Compare at the optimiser's accuracy (tight",
                 "fits), not bit for bit.")),
  cases = cases)
## written, then read back: valid JSON, numbers exact
back <- write_json_read_back(top, failures, file.path(OUT, "smooth_by_references.json"))
check_tight_read_back(back, cases, list(c("grid_link", "se_fit"), c("fitted", "mer"), c("gam", "Vp")))
for (cid in intersect(GAUSSIAN, names(cases))) for (l in LEV)
  stopifnot(read_back_identical(back$cases[[cid]][["basis"]]$levels[[l]]$X, cases[[cid]][["basis"]]$levels[[l]]$X))

## ---------------------------------------------------------------- summary

options(width = 200)
cat("\n==== summary ====\n")
for (cid in names(cases)) for (blk in c("results", "tight")) {
  r <- case_results(cases[[cid]], blk)
  cat(sprintf("%-15s %-7s %s %.10f  logLik %.10f  sd g %.8f  sd a %.8f  sd b %.8f  sd c %.8f%s  feval %d  |grad| %.1e\n",
              cid, blk, if (r$REML) "REMLcrit" else "deviance", if (r$REML) r$REMLcrit else r$deviance,
              r$logLik, r$varcorr$sd$g, r$smooth_sd_by_level$a, r$smooth_sd_by_level$b, r$smooth_sd_by_level$c,
              if (!is.null(r$sigma)) sprintf("  sigma %.8f", r$sigma) else "",
              r$optinfo$feval, r$optinfo$max_abs_gradient))
  cat("   edf:", paste(sprintf("%s=%.6f", unlist(r$gam$edf$names), unlist(r$gam$edf$values)), collapse = " "),
      " sp:", paste(sprintf("%.6g", unlist(r$gam$sp$values)), collapse = " "), "\n")
  cat("   fixef:", paste(sprintf("%s=%.8f", unlist(r$fixef$names), unlist(r$fixef$values)), collapse = " "), "\n")
  cat("   theta:", paste(sprintf("%s=%.8f", unlist(r$theta$names), unlist(r$theta$values)), collapse = " "), "\n")
  cat("   coef map check:", max(unlist(r$gam$coef_map_check$max_abs_diff$values)),
      " warnings:", if (length(r$fit_warnings)) paste(unique(unlist(r$fit_warnings)), collapse = " | ") else "none", "\n")
}
for (cid in names(cases)) {
  t <- cases[[cid]]$tight_vs_default
  cat(sprintf("%-15s tight - default: logLik %.3e theta %.3e fixef %.3e edf %.3e link %.3e smooth %.3e\n", cid,
              t$logLik_tight_minus_default, t$theta_max_abs_diff, t$fixef_max_abs_diff, t$edf_max_abs_diff,
              t$link_fit_max_abs_diff, t$smooth_fit_max_abs_diff))
  bs <- cases[[cid]][["basis"]]
  if (!is.null(bs)) {
    cat(sprintf("   constraint: before %s   after %s   (B Z vs plain X %.1e)\n",
                paste(sprintf("%.1e", unlist(bs$constraint$before_max_abs_diff$values)), collapse = " "),
                paste(sprintf("%.1e", unlist(bs$constraint$after_max_abs_diff$values)), collapse = " "),
                bs$constraint$B_Z_vs_plain_X_max_abs_diff))
    for (l in LEV) {
      ck <- bs$checks[[l]]
      cat(sprintf("   %s: ind*plain %.1e other rows %.1e colsum all %.2e level %.2e (after: %.1e) S.scale rel %.1e / masked %.1e PredictMat %.1e grid %.1e gamm4 %.1e Xr %.1e Xf %.1e mer X %.1e Z %.1e\n",
                  l, ck$X_vs_indicator_times_plain_X_max_abs_diff, ck$X_other_level_rows_max_abs,
                  ck$X_colsum_all_rows_max_abs, ck$X_colsum_level_rows_max_abs, ck$after_X_colsum_level_rows_max_abs,
                  ck$S_scale_rel_diff_vs_whole_data, ck$S_scale_rel_diff_vs_level_masked,
                  ck$X_vs_PredictMat_data_max_abs_diff, ck$PredictMat_grid_vs_plain_basis_max_abs_diff,
                  ck$gamm4_smooth_vs_smoothCon_max_abs_diff, ck$Xr_vs_indicator_times_plain_Xr_max_abs_diff,
                  ck$Xf_vs_indicator_times_plain_Xf_max_abs_diff, ck$smooth2random_Xf_vs_mer_X_max_abs_diff,
                  ck$smooth2random_Xr_vs_mer_Z_max_abs_diff))
    }
  }
  po <- cases[[cid]]$polish
  if (!is.null(po)) {
    if (!is.null(po$error)) cat("   polish ERROR", po$error, "\n")
    else cat(sprintf("   polish: objective at tight - tight %.3e  logLik %.10f gain %.3e  theta %.3e fixef %.3e link %.3e  sd g %.8f a %.8f b %.3e c %.3e  ierr %d feval %d  checks %.1e %.1e\n",
                     po$objective_at_tight_minus_tight, po$logLik, po$logLik_gain_vs_tight, po$vs_tight$theta_max_abs_diff,
                     po$vs_tight$fixef_max_abs_diff, po$vs_tight$grid_link_fit_max_abs_diff, po$varcorr_sd$g,
                     po$smooth_sd_by_level$a, po$smooth_sd_by_level$b, po$smooth_sd_by_level$c, po$bobyqa_ierr,
                     po$bobyqa_feval, po$checks$gam_coef_map_at_tight_vs_coef_max_abs_diff,
                     po$checks$lpmatrix_at_tight_vs_predict_link_max_abs_diff))
  }
  gc <- cases[[cid]]$mgcv_gam_check
  if (!is.null(gc)) {
    if (!is.null(gc$error)) cat("   mgcv gam check ERROR", gc$error, "\n")
    else cat(sprintf("   mgcv gam - tight: logLik %.3e sp rel %s sig2 rel %.3e sigma2_g rel %.3e edf %s link %.3e se %.3e smooth %.3e se %.3e warnings %s\n",
                     gc$vs_tight$logLik_diff,
                     paste(sprintf("%.2e", unlist(gc$vs_tight$sp_rel_diff$values)), collapse = "/"),
                     gc$vs_tight$sig2_rel_diff, gc$vs_tight$sigma2_g_rel_diff,
                     paste(sprintf("%.2e", unlist(gc$vs_tight$edf_diff$values)), collapse = "/"),
                     gc$vs_tight$link_fit_max_abs_diff, gc$vs_tight$link_se_fit_max_abs_diff,
                     gc$vs_tight$smooth_fit_max_abs_diff, gc$vs_tight$smooth_se_fit_max_abs_diff,
                     if (length(gc$fit_warnings)) paste(unlist(gc$fit_warnings), collapse = " | ") else "none"))
    if (is.null(gc$error)) cat(sprintf("   mgcv gam at gamm4's sp - tight: logLik %.3e sig2 rel %.3e coef %.3e\n",
                                       gc$at_gamm4_sp$logLik_diff, gc$at_gamm4_sp$sig2_rel_diff,
                                       gc$at_gamm4_sp$coef_max_abs_diff))
  }
  ts <- cases[[cid]]$tight_stability
  if (!is.null(ts)) {
    if (!is.null(ts$error)) cat("   tight stability ERROR", ts$error, "\n")
    else cat(sprintf("   tight stability: logLik %.3e theta %.3e fixef %.3e link %.3e\n",
                     ts$logLik_minus_tight, ts$theta_max_abs_diff, ts$fixef_max_abs_diff, ts$link_fit_max_abs_diff))
  }
  if (!is.null(cases[[cid]][["basis_same_as_by_tp_gaussian_max_abs_diff"]]))
    cat("   basis same as by_tp_gaussian:", cases[[cid]][["basis_same_as_by_tp_gaussian_max_abs_diff"]], "\n")
}
report_failures(failures)
