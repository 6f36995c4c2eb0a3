## Profile-likelihood confidence intervals for GLMMs (lme4 glmer, Laplace and adaptive Gauss-Hermite; glmmTMB
## nbinom2), with the fits they come from and their wall times, for the Python library's tests.
##
## Run from the repository root:   Rscript tests/data/r/glmm_profile_references.R
## writes tests/data/glmm_profile_references.json, tests/data/poisson_slope.csv, tests/data/salamanders_mined.csv
## (about 5 minutes on 2 shared cores: 3 x 3 timed profiles of the poisson_slope fits, 7-15 s each, and the
## exact-root cross-checks, ~1 min of which for Salamanders).
##
## Cases and exact calls:
##  poisson_slope (data simulated here, written to tests/data/poisson_slope.csv, see make_poisson_slope()):
##    default:     glmer(y ~ x + (x | g), family = poisson, data = d)
##    tight:       glmer(y ~ x + (x | g), family = poisson, data = d,
##                       control = glmerControl(tolPwrss = 1e-10, optCtrl = list(xtol_abs = 1e-12, ftol_abs = 1e-12)))
##                 NB: glmer's default optimizers are bobyqa (stage 1) and Nelder_Mead (stage 2); neither knows
##                 xtol_abs / ftol_abs (nloptwrap's names), so both warn "unused control arguments ignored" and only
##                 tolPwrss takes effect (recorded in the fit's and the profile's warnings).
##    tight_nlopt: (extra, not in the brief) the same optCtrl with the optimizer that understands it:
##                 glmer(y ~ x + (x | g), family = poisson, data = d, control = glmerControl(optimizer = "nloptwrap",
##                       tolPwrss = 1e-10, optCtrl = list(xtol_abs = 1e-12, ftol_abs = 1e-12)))
##                 (it turns out to stop earlier, with a convergence warning: not a tighter fit)
##  cbpp_agq:  glmer(cbind(incidence, size - incidence) ~ period + (1 | herd), family = binomial, data = cbpp, nAGQ = 9)
##             (cbpp read from bayesmix/datasets/cbpp.csv and checked value by value against lme4::cbpp)
##  salamanders_nb2: glmmTMB(count ~ mined + (1 | site), family = nbinom2, data = Salamanders)
##             (glmmTMB::Salamanders; columns count, mined, site written to tests/data/salamanders_mined.csv)
## and on each lme4 fit: confint(fm, method = "profile")  (3 runs timed with system.time, all 3 must agree);
## on the glmmTMB fit: confint(fm, method = "profile") (glmmTMB's default rows: no dispersion row),
##   confint(fm, method = "profile", full = TRUE) (adds the log-dispersion row), and, for comparison,
##   confint(fm, method = "uniroot", full = TRUE) (TMB::tmbroot root finding, no spline) and
##   confint(fm, full = TRUE) (Wald).
## Cross-check for every case (profile_exact): the profile bounds found without interpolation, by uniroot on
## zeta(v) = sign sqrt(min dev given the row's value - min dev), re-minimising the other parameters with
## minqa::bobyqa at each v (see exact_profile(); lme4: lme4:::devfun2 with PIRLS tolerance 1e-12; glmmTMB:
## 2 * m$obj$fn).
##
## lme4 row names: .sig01, .sig02, ... follow lme4's Cv_to_Sv order: per random-effect term, the lower triangle of its
## q x q sd/cor matrix column by column (diagonal = sd, off-diagonal = correlation); GLMMs without a scale have no
## .sigma. For (x | g): .sig01 = sd (Intercept), .sig02 = cor((Intercept), x), .sig03 = sd x.
## glmmTMB row names: "(Intercept)", "minedno" (fixed effects, log scale), "d~(Intercept)" (= log phi, the nbinom2
## dispersion: Var = mu + mu^2 / phi, phi = sigma(fit)), "theta_1|site.1" (= log sd of the site intercepts).
##
## Numbers are written as the shortest decimal that round-trips (15-17 significant digits; jsonlite 1.8.4 alone
## stops at 15 even with digits = NA); helpers in tests/data/r/reference_helpers.R.
##
## Tested with R 4.2.2, lme4 1.1-31, glmmTMB 1.1.5, TMB 1.9.2, Matrix 1.5-3, jsonlite 1.8.4 (Debian bookworm packages).

suppressPackageStartupMessages({
  library(lme4)
  library(glmmTMB)
  library(jsonlite)
})

OUT <- file.path("tests", "data")
SHARED <- file.path("bayesmix", "datasets")
stopifnot(dir.exists(OUT), file.exists(file.path(SHARED, "cbpp.csv")))

RNGkind("Mersenne-Twister", "Inversion", "Rejection")
versions <- list(
  R = R.version.string,
  lme4 = as.character(packageVersion("lme4")),
  glmmTMB = as.character(packageVersion("glmmTMB")),
  TMB = as.character(packageVersion("TMB")),
  Matrix = as.character(packageVersion("Matrix")),
  jsonlite = as.character(packageVersion("jsonlite")),
  RNGkind = paste(RNGkind(), collapse = " / ")
)

N_PROFILE_RUNS <- 3L
QVAL <- 0.5 * qchisq(0.95, df = 1)   # glmmTMB's profile target (half the LR statistic)

## ---------------------------------------------------------------- helpers

source(file.path("tests", "data", "r", "reference_helpers.R"))   # capture, arr, fmt_num, parse_exact, write_json_file

warn_table <- function(w) {   # unique warnings with their counts
  if (!length(w)) return(list(message = arr(NULL), count = arr(integer(0))))
  tb <- table(w)
  list(message = arr(names(tb)), count = arr(as.integer(tb)))
}
ci_block <- function(ci, call) {
  list(call = call, rows = arr(rownames(ci)), lower = arr(as.double(ci[, 1])), upper = arr(as.double(ci[, 2])),
       level_columns = arr(colnames(ci)[1:2]))
}
timed_runs <- function(expr_text, env) {   # N_PROFILE_RUNS timed evaluations; all must give identical values
  runs <- vector("list", N_PROFILE_RUNS); el <- numeric(N_PROFILE_RUNS); us <- numeric(N_PROFILE_RUNS)
  for (r in seq_len(N_PROFILE_RUNS)) {
    tm <- system.time(runs[[r]] <- capture(eval(parse(text = expr_text), env)))
    el[r] <- tm[["elapsed"]]; us[r] <- tm[["user.self"]] + tm[["sys.self"]]
    cat(sprintf("  %s run %d: %.3f s elapsed\n", expr_text, r, el[r]))
  }
  for (r in 2:N_PROFILE_RUNS) stopifnot(identical(runs[[r]]$value, runs[[1]]$value))
  list(value = runs[[1]]$value, warnings = runs[[1]]$warnings, messages = runs[[1]]$messages,
       wall_time_s = list(runs = arr(round(el, 3)), median = round(median(el), 3),
                          user_plus_system_median = round(median(us), 3),
                          note = sprintf("system.time(%s)[[\"elapsed\"]], %d runs (identical results), R 4.2.2 on 2 CPU cores shared with other jobs",
                                         expr_text, N_PROFILE_RUNS)))
}

## ---------------------------------------------------------------- lme4 parameter names

sig_table <- function(fm) {
  cnms <- fm@cnms
  rows <- list()
  for (k in seq_along(cnms)) {
    v <- cnms[[k]]; q <- length(v); g <- names(cnms)[k]
    for (j in seq_len(q)) for (i in j:q) {
      rows[[length(rows) + 1]] <- if (i == j) data.frame(grp = g, var1 = v[i], var2 = NA_character_)
                                  else data.frame(grp = g, var1 = v[j], var2 = v[i])
    }
  }
  tab <- do.call(rbind, rows)
  tab$name <- sprintf(".sig%02d", seq_len(nrow(tab)))
  if (isLMM(fm)) tab <- rbind(tab, data.frame(grp = "Residual", var1 = NA_character_, var2 = NA_character_,
                                              name = ".sigma"))
  tab
}
meaning <- function(grp, var1, var2) {
  ifelse(grp == "Residual", "residual sd (sigma)",
         ifelse(is.na(var2), sprintf("sd of %s %s", grp, var1),
                sprintf("cor of %s (%s, %s)", grp, var1, var2)))
}
key <- function(d) paste(d$grp, d$var1, d$var2, sep = "\r")

## ---------------------------------------------------------------- exact profile roots (cross-check, no spline)

## dev(p): the deviance as a function of the full parameter vector p (named, on the scale of confint's rows);
## for each row j, zeta_j(v) = sign(v - p_hat_j) sqrt(min_{p: p_j = v} dev(p) - dev_min), and the bounds are the
## roots of zeta_j(v) = -/+ qnorm(0.975), found by uniroot (tol 1e-10) with an inner optimisation per evaluation,
## started from the polished optimum p_hat. approx: lme4's / glmmTMB's spline bounds, used to bracket the roots.
exact_profile <- function(dev, start, lower, upper, approx, inner, cut = qnorm(0.975)) {
  o <- inner(dev, start, lower, upper)
  for (k in 1:3) { o2 <- inner(dev, o$par, lower, upper); if (o2$value >= o$value) break; o <- o2 }
  best <- o$par; devmin <- o$value; names(best) <- names(start)
  n_eval <- 0L
  last <- vector("list", length(start))
  prof <- function(j, v) {
    g <- function(p) { q <- best; q[j] <- v; q[-j] <- p; n_eval <<- n_eval + 1L; dev(q) }
    ## two starts (the optimum, and the last inner solution for this row), each optimisation restarted once
    ## from its result; the smallest value is kept
    starts <- list(best[-j]); if (!is.null(last[[j]])) starts[[2]] <- last[[j]]
    oo <- NULL
    for (st in starts) {
      o1 <- inner(g, st, lower[-j], upper[-j]); o2 <- inner(g, o1$par, lower[-j], upper[-j])
      if (o2$value < o1$value) o1 <- o2
      if (is.null(oo) || o1$value < oo$value) oo <- o1
    }
    last[[j]] <<- oo$par
    if (oo$value < devmin - 1e-9) warning(sprintf("profile of %s at %g below the minimum by %g", names(start)[j], v, devmin - oo$value))
    oo$value
  }
  zeta <- function(j, v) sign(v - best[j]) * sqrt(max(prof(j, v) - devmin, 0))
  res <- lapply(seq_along(start), function(j) {
    side <- function(s) {   # s = -1 lower, +1 upper
      a <- approx[j, if (s < 0) 1 else 2]
      far <- best[j] + s * 1.25 * abs(a - best[j])
      far <- if (s < 0) max(lower[j], far) else min(upper[j], far)
      zf <- zeta(j, far)
      if (s * zf < cut) return(list(bound = NA_real_, zeta_at_limit = zf, limit = far, iter = 0L, zeta_at_root = NA_real_))
      r <- if (s < 0) uniroot(function(v) zeta(j, v) + cut, c(far, best[j]), f.lower = zf + cut, f.upper = cut, tol = 1e-10)
           else uniroot(function(v) zeta(j, v) - cut, c(best[j], far), f.lower = -cut, f.upper = zf - cut, tol = 1e-10)
      list(bound = r$root, zeta_at_limit = zf, limit = far, iter = r$iter, zeta_at_root = zeta(j, r$root))
    }
    list(lower = side(-1), upper = side(1))
  })
  lowb <- vapply(res, function(r) r$lower$bound, 0); upb <- vapply(res, function(r) r$upper$bound, 0)
  list(rows = arr(names(start)), lower = arr(lowb), upper = arr(upb), optimum = arr(best), dev_min = devmin,
       zeta_at_root_lower = arr(vapply(res, function(r) r$lower$zeta_at_root, 0)),
       zeta_at_root_upper = arr(vapply(res, function(r) r$upper$zeta_at_root, 0)),
       uniroot_iter = arr(as.integer(c(vapply(res, function(r) r$lower$iter, 0L), vapply(res, function(r) r$upper$iter, 0L)))),
       spline_minus_exact_lower = arr(approx[, 1] - lowb), spline_minus_exact_upper = arr(approx[, 2] - upb),
       n_inner_evaluations = n_eval)
}
bobyqa_inner <- function(fn, par, lower, upper) {
  o <- minqa::bobyqa(par, fn, lower = lower, upper = upper, control = list(rhobeg = 0.02, rhoend = 1e-11, maxfun = 1e5))
  list(par = o$par, value = o$fval)
}
## lme4: deviance on the (sd, cor, fixef) scale = lme4:::devfun2 (what profile.merMod uses), but with PIRLS run to
## tolPwrss = 1e-12 instead of the 1e-7 that getME(fm, "devfun") builds in whatever the fit's control
lme4_exact <- function(fm, approx) {
  f <- lme4:::devfun2(fm, useSc = FALSE, signames = TRUE)
  d0env <- environment(environment(f)$d0)
  tol_used_by_profile <- d0env$tolPwrss
  d0env$tolPwrss <- 1e-12
  st <- sig_table(fm)
  start <- attr(f, "optimum")
  nsig <- nrow(st); nf <- length(start) - nsig
  lower <- c(ifelse(is.na(st$var2), 0, -1), rep(-Inf, nf)); upper <- c(ifelse(is.na(st$var2), Inf, 1), rep(Inf, nf))
  tm <- system.time(ex <- exact_profile(function(p) f(p), start, lower, upper, approx, bobyqa_inner))
  c(ex, list(logLik_at_dev_min = -ex$dev_min / 2,
             fit_deviance = attr(f, "basedev"), fit_deviance_minus_dev_min = attr(f, "basedev") - ex$dev_min,
             tolPwrss_of_profile_devfun = tol_used_by_profile, wall_time_s = round(tm[["elapsed"]], 3),
             note = paste("Cross-check of the spline bounds: deviance = lme4:::devfun2(fm, useSc = FALSE) (the function",
                          "profile.merMod profiles: glmer's (theta, beta) deviance, reparametrised to sd / cor) with its",
                          "PIRLS tolerance set to 1e-12 (lme4's profile uses getME(fm, \"devfun\"), rebuilt by",
                          "mkGlmerDevfun with the default tolPwrss = 1e-7 whatever the fit's control:",
                          "tolPwrss_of_profile_devfun); dev_min: minimised with minqa::bobyqa (rhoend 1e-11) from the",
                          "fit; each zeta evaluation re-minimises the other parameters with bobyqa from that optimum and from",
                          "the previous evaluation's solution, each restarted once, keeping the smaller",
                          "(bounds sd >= 0, -1 <= cor <= 1); roots of zeta = -/+ qnorm(0.975) by uniroot (tol 1e-10).",
                          "These are the profile-likelihood bounds without lme4's spline / linear interpolation",
                          "(spline_minus_exact_*: lme4's confint minus these).")))
}

## ---------------------------------------------------------------- data

## cbpp from the repository's CSV, checked against lme4::cbpp
cb <- read.csv(file.path(SHARED, "cbpp.csv"), colClasses = c(herd = "character", period = "character"))
stopifnot(nrow(cb) == nrow(lme4::cbpp))
cb$herd <- factor(cb$herd, levels(lme4::cbpp$herd))
cb$period <- factor(cb$period, levels(lme4::cbpp$period))
for (cc in c("herd", "period")) stopifnot(identical(as.character(cb[[cc]]), as.character(lme4::cbpp[[cc]])))
for (cc in c("incidence", "size")) stopifnot(all(as.numeric(cb[[cc]]) == as.numeric(lme4::cbpp[[cc]])))
stopifnot(!anyNA(cb$herd), !anyNA(cb$period))
cbpp <- cb
cat("bayesmix/datasets/cbpp.csv matches lme4::cbpp value by value\n")

## poisson_slope: simulated here
PS_SEED <- 20261204L
PS_TRUE <- list(beta = c(0.8, 0.5), sd = c(0.5, 0.3), cor = 0.4)
PS_CODE <- paste(
  "set.seed(20261204); G <- 40; n <- 12;",
  "S <- matrix(c(0.5^2, 0.4 * 0.5 * 0.3, 0.4 * 0.5 * 0.3, 0.3^2), 2);",
  "z <- matrix(rnorm(2 * G), ncol = 2);",
  "b <- z %*% chol(S);",
  "x <- runif(G * n, -1, 1);",
  "gi <- rep(seq_len(G), each = n);",
  "eta <- 0.8 + 0.5 * x + b[gi, 1] + b[gi, 2] * x;",
  "y <- rpois(G * n, exp(eta));",
  "d <- data.frame(y = y, x = x, g = factor(sprintf(\"g%02d\", gi)))")
make_poisson_slope <- function() {
  set.seed(PS_SEED); G <- 40; n <- 12
  S <- matrix(c(0.5^2, 0.4 * 0.5 * 0.3, 0.4 * 0.5 * 0.3, 0.3^2), 2)
  z <- matrix(rnorm(2 * G), ncol = 2)
  b <- z %*% chol(S)
  x <- runif(G * n, -1, 1)
  gi <- rep(seq_len(G), each = n)
  eta <- 0.8 + 0.5 * x + b[gi, 1] + b[gi, 2] * x
  y <- rpois(G * n, exp(eta))
  list(d = data.frame(y = y, x = x, g = factor(sprintf("g%02d", gi))), b = b)
}
ps <- make_poisson_slope()
d <- ps$d
stopifnot(identical(levels(d$g), sprintf("g%02d", 1:40)))
f_ps <- file.path(OUT, "poisson_slope.csv")
local({
  w <- data.frame(y = d$y, x = fmt_num(d$x), g = as.character(d$g), stringsAsFactors = FALSE)
  write.csv(w, f_ps, row.names = FALSE, quote = 3)   # only g quoted; x as its shortest round-trip decimal
  back <- read.csv(f_ps, colClasses = "character")
  stopifnot(identical(names(back), c("y", "x", "g")), nrow(back) == nrow(d),
            all(parse_exact(back$x) == d$x),                 # strtod (as Python's float)
            all(as.integer(back$y) == d$y), identical(back$g, as.character(d$g)))
  back2 <- read.csv(f_ps)
  cat("poisson_slope.csv: x read back by strtod exactly; by R's read.csv exactly:", all(back2$x == d$x), "\n")
})
ps_data_note <- list(
  file = "tests/data/poisson_slope.csv", rows = nrow(d), columns = arr(c("y", "x", "g")),
  seed = PS_SEED, r_code = PS_CODE,
  true = list(intercept = 0.8, slope = 0.5, sd_intercept = 0.5, sd_slope = 0.3, cor = 0.4),
  simulated_b_sd = arr(apply(ps$b, 2, sd)), simulated_b_cor = cor(ps$b[, 1], ps$b[, 2]),
  y_summary = list(mean = mean(d$y), max = max(d$y), n_zero = sum(d$y == 0)),
  note = paste("z: 80 N(0,1) draws filled column-major (z[, 1] = the first 40); b = z %*% chol(S): b[, 1] = b0",
               "(intercept), b[, 2] = b1 (slope), rows ~ N(0, S) with sd 0.5, 0.3 and cor 0.4.",
               "40 groups g01..g40 (factor levels in that order) x 12 rows, rows grouped by g; x written as its",
               "shortest round-trip decimal (checked: parsed by strtod it equals R's double exactly); y integer.",
               "RNG: R's default Mersenne-Twister / Inversion / Rejection; rpois and runif draw order as in r_code."))

## Salamanders (glmmTMB) -> count, mined, site
f_sal <- file.path(OUT, "salamanders_mined.csv")
local({
  s <- Salamanders
  stopifnot(identical(levels(s$mined), c("yes", "no")), is.integer(s$count))
  w <- data.frame(count = s$count, mined = as.character(s$mined), site = as.character(s$site), stringsAsFactors = FALSE)
  write.csv(w, f_sal, row.names = FALSE)
  back <- read.csv(f_sal, colClasses = "character")
  stopifnot(identical(names(back), c("count", "mined", "site")), nrow(back) == nrow(s),
            all(as.integer(back$count) == s$count), identical(back$mined, as.character(s$mined)),
            identical(back$site, as.character(s$site)))
  full <- file.path(OUT, "salamanders.csv")
  if (file.exists(full)) {
    f2 <- read.csv(full, colClasses = "character")
    stopifnot(identical(f2$count, back$count), identical(f2$mined, back$mined), identical(f2$site, back$site))
    cat("salamanders_mined.csv = the count, mined, site columns of tests/data/salamanders.csv\n")
  }
})

## ---------------------------------------------------------------- lme4 cases

lme4_fit <- function(call, env) {
  cat("\n---- ", call, "\n", sep = "")
  capF <- capture(eval(parse(text = call), env)); fm <- capF$value
  vc <- as.data.frame(VarCorr(fm))
  st <- sig_table(fm)
  useSc <- as.logical(fm@devcomp$dims[["useSc"]])
  stopifnot(identical(lme4:::profnames(fm, TRUE, useSc = useSc), st$name))
  new_names <- lme4:::profnames(fm, FALSE, useSc = useSc)
  vc_pos <- match(key(st), key(vc)); stopifnot(!anyNA(vc_pos))
  fe <- fixef(fm)
  param_rows <- c(st$name, names(fe))
  th <- getME(fm, "theta")
  fit <- list(
    call = call, nAGQ = fm@devcomp$dims[["nAGQ"]], optimizer = arr(fm@optinfo$optimizer),
    logLik = as.numeric(logLik(fm)), deviance = deviance(fm),
    fixef_names = arr(names(fe)), fixef = arr(fe),
    theta_names = arr(names(th)), theta = arr(th),
    varcorr = list(grp = arr(vc$grp), var1 = arr(vc$var1), var2 = arr(vc$var2), vcov = arr(vc$vcov),
                   sdcor = arr(vc$sdcor)),
    is_singular = isSingular(fm), warnings = arr(unique(capF$warnings)), messages = arr(unique(capF$messages)),
    optinfo_warnings = arr(unlist(fm@optinfo$warnings)),
    conv_messages = arr(unlist(fm@optinfo$conv$lme4$messages)),
    feval = fm@optinfo$feval)
  parameters <- list(
    rows = arr(param_rows),
    new_names = arr(c(new_names, names(fe))),
    meaning = arr(c(meaning(st$grp, st$var1, st$var2), paste("fixed effect", names(fe)))),
    varcorr_row = arr(c(vc_pos, rep(NA_integer_, length(fe)))),
    estimate = arr(c(vc$sdcor[vc_pos], fe)),
    note = paste("rows: the names confint gives (oldNames = TRUE, the default); new_names: with oldNames = FALSE;",
                 "varcorr_row: 1-based row of fit.varcorr (as.data.frame(VarCorr(fm))) that the parameter is;",
                 "estimate: its value at the fit (sd / cor scale, not theta)"))
  env$fm <- fm
  pr <- timed_runs('confint(fm, method = "profile")', env)
  cip <- pr$value
  stopifnot(identical(rownames(cip), param_rows))
  profile <- ci_block(cip, 'confint(fm, method = "profile")')
  profile$warnings <- warn_table(pr$warnings)
  profile$messages <- arr(unique(pr$messages))
  profile$n_na <- sum(is.na(cip))
  profile$wall_time_s <- pr$wall_time_s
  print(cip)
  if (length(pr$warnings)) { cat("  profile warnings:\n"); print(table(pr$warnings)) }
  res <- list(fit = fit, parameters = parameters, profile = profile)
  attr(res, "fm") <- fm; attr(res, "ci") <- cip
  res
}

env <- new.env()
env$d <- d; env$cbpp <- cbpp

cases <- list()

## poisson_slope
calls_ps <- c(
  default = "glmer(y ~ x + (x | g), family = poisson, data = d)",
  tight = "glmer(y ~ x + (x | g), family = poisson, data = d, control = glmerControl(tolPwrss = 1e-10, optCtrl = list(xtol_abs = 1e-12, ftol_abs = 1e-12)))",
  tight_nlopt = "glmer(y ~ x + (x | g), family = poisson, data = d, control = glmerControl(optimizer = \"nloptwrap\", tolPwrss = 1e-10, optCtrl = list(xtol_abs = 1e-12, ftol_abs = 1e-12)))")
cat("\n==== poisson_slope\n")
fits_ps <- lapply(calls_ps, lme4_fit, env = env)
for (v in names(fits_ps)) stopifnot(identical(fits_ps[[v]]$parameters$rows, fits_ps$default$parameters$rows))
cat("\n  exact profile roots (from the tight fit's devfun2) ...\n")
ps_exact <- lme4_exact(attr(fits_ps$tight, "fm"), attr(fits_ps$tight, "ci"))
print(rbind(lower = ps_exact$lower, upper = ps_exact$upper, spl_lo = ps_exact$spline_minus_exact_lower,
            spl_up = ps_exact$spline_minus_exact_upper), digits = 8)
for (v in names(fits_ps)) {
  ci <- attr(fits_ps[[v]], "ci")
  fits_ps[[v]]$profile$minus_exact <- list(lower = arr(ci[, 1] - ps_exact$lower), upper = arr(ci[, 2] - ps_exact$upper))
}
## the .sig02 (correlation) profile of the default fit, as lme4 traces it (distinct points)
sig02 <- local({
  pp <- capture(profile(attr(fits_ps$default, "fm"), which = ".sig02"))
  p <- as.data.frame(pp$value); p <- p[p$.par == ".sig02", ]
  p <- p[!duplicated(p$.zeta), ]
  p <- p[order(p$.sig02), ]
  list(call = 'profile(fm, which = ".sig02") (default fit); rows with a repeated .zeta dropped',
       sig02 = arr(p$.sig02), zeta = arr(p$.zeta), sig01 = arr(p$.sig01), sig03 = arr(p$.sig03),
       intercept = arr(p[["(Intercept)"]]), x = arr(p$x), warnings = warn_table(pp$warnings),
       note = paste("lme4's trace of the correlation profile. Below cor ~ -0.5 its optimiser drops onto sd(x) = 0",
                    "(.sig03 = 0, where the deviance does not depend on the correlation; zeta = -3.549, repeated",
                    "~90 times with minstep steps), which makes the profile non-monotonic; interpSpline then fails",
                    "(\"bad spline fit for .sig02: falling back to linear interpolation\"), so BOTH .sig02 bounds are",
                    "linear interpolations between neighbouring points here (compare profile_exact)."))
})
diffs <- function(a, b) list(
  logLik = b$fit$logLik - a$fit$logLik,
  max_abs_fixef = max(abs(b$fit$fixef - a$fit$fixef)),
  max_abs_theta = max(abs(b$fit$theta - a$fit$theta)),
  max_abs_profile_bound = max(abs(c(b$profile$lower - a$profile$lower, b$profile$upper - a$profile$upper))))
cases$poisson_slope <- list(
  data = ps_data_note,
  factor_levels = list(g = arr(levels(d$g))),
  parameters = fits_ps$default$parameters[c("rows", "new_names", "meaning", "note")],
  row_meaning = list(.sig01 = "sd of g (Intercept)", .sig02 = "cor of g ((Intercept), x)", .sig03 = "sd of g x",
                     `(Intercept)` = "fixed intercept", x = "fixed slope of x"),
  default = fits_ps$default, tight = fits_ps$tight, tight_nlopt = fits_ps$tight_nlopt,
  tight_minus_default = diffs(fits_ps$default, fits_ps$tight),
  tight_nlopt_minus_default = diffs(fits_ps$default, fits_ps$tight_nlopt),
  profile_exact = ps_exact,
  sig02_profile_trace = sig02,
  note = paste("default / tight / tight_nlopt: the same model fitted with different controls, each with its",
               "own confint(fm, method = \"profile\"). lme4's profile re-optimises with the fit's own optimizer and",
               "control (fm@optinfo), so tight's profile inherits the ignored optCtrl (its warnings). tight:",
               "the brief's control; glmer's default optimizers (bobyqa, Nelder_Mead) do not take xtol_abs /",
               "ftol_abs, so only tolPwrss = 1e-10 acts (warning \"unused control arguments ignored\").",
               "tight_nlopt (extra): optimizer = \"nloptwrap\" (NLOPT_LN_BOBYQA, both stages), where the",
               "optCtrl does act, yet it stops EARLIER (63 evaluations, max|grad| 0.0094 convergence warning,",
               "logLik 6e-5 below default): not a tighter fit. None of the three reaches the Laplace optimum:",
               "profile_exact.dev_min is 2.2e-4 below their deviances (logLik_at_dev_min). profile_exact: the",
               "model's exact profile bounds (one set: they depend on the data, not on the fit). Profile intervals: likelihood-ratio (signed root deviance, zeta) profile of the",
               "Laplace deviance, interpolated by lme4's splines (confint.thpr)."))

## cbpp_agq
cat("\n==== cbpp_agq\n")
agq <- lme4_fit("glmer(cbind(incidence, size - incidence) ~ period + (1 | herd), family = binomial, data = cbpp, nAGQ = 9)", env)
cat("\n  exact profile roots ...\n")
agq_exact <- lme4_exact(attr(agq, "fm"), attr(agq, "ci"))
print(rbind(lower = agq_exact$lower, upper = agq_exact$upper, spl_lo = agq_exact$spline_minus_exact_lower,
            spl_up = agq_exact$spline_minus_exact_upper), digits = 8)
agq$profile$minus_exact <- list(lower = arr(attr(agq, "ci")[, 1] - agq_exact$lower),
                                upper = arr(attr(agq, "ci")[, 2] - agq_exact$upper))
cases$cbpp_agq <- c(list(
  data = "bayesmix/datasets/cbpp.csv (= lme4::cbpp, 56 rows; checked value by value)",
  factor_levels = list(herd = arr(levels(cbpp$herd)), period = arr(levels(cbpp$period)))),
  agq,
  list(profile_exact = agq_exact),
  list(note = paste("nAGQ = 9 adaptive Gauss-Hermite quadrature, default glmerControl(). lme4's logLik for nAGQ > 1",
                    "leaves out the binomial coefficients (sum log choose(size, incidence)), so it is not comparable",
                    "with the Laplace (nAGQ = 1) logLik; the profile is of this nAGQ = 9 deviance",
                    "(profile's devfun2 comes from update(fm, devFunOnly = TRUE), keeping nAGQ = 9; the",
                    "profiled deviance takes (theta, beta) together, as in the nAGQ > 0 second stage).")))
cases$cbpp_agq$fit$binomial_constant <- sum(lchoose(cbpp$size, cbpp$incidence))

## ---------------------------------------------------------------- glmmTMB case: salamanders_nb2

cat("\n==== salamanders_nb2\n")
SAL_CALL <- "glmmTMB(count ~ mined + (1 | site), family = nbinom2, data = Salamanders)"
capF <- capture(eval(parse(text = SAL_CALL)))
m <- capF$value
env$m <- m
fe <- fixef(m)$cond
re_sd <- as.numeric(attr(VarCorr(m)$cond$site, "stddev"))
phi <- sigma(m)
par <- m$fit$par
stopifnot(isTRUE(all.equal(unname(exp(par[names(par) == "theta"])), re_sd, tolerance = 1e-14)),
          isTRUE(all.equal(unname(exp(par[names(par) == "betad"])), phi, tolerance = 1e-14)))
sal_fit <- list(
  call = SAL_CALL, logLik = as.numeric(logLik(m)), logLik_df = attr(logLik(m), "df"), nobs = nobs(m),
  ngrps = nlevels(droplevels(Salamanders$site)),
  fixef_names = arr(names(fe)), fixef = arr(fe),
  re_sd = re_sd, sigma_phi = phi, log_re_sd = log(re_sd), log_phi = log(phi),
  par_names = arr(names(par)), par = arr(par),
  objective = m$fit$objective, convergence = m$fit$convergence, optimizer_message = m$fit$message,
  pdHess = m$sdr$pdHess, max_abs_gradient = max(abs(m$sdr$gradient.fixed)),
  warnings = arr(unique(capF$warnings)), messages = arr(unique(capF$messages)),
  note = paste("Laplace ML (glmmTMB default). sigma_phi = sigma(fit) = exp(betad) is nbinom2's phi",
               "(glmmTMB's 'dispersion parameter'), Var(y) = mu + mu^2 / phi; re_sd = sd of the site intercepts =",
               "exp(theta). par: the outer parameter vector (beta, beta, betad = log phi, theta = log sd).",
               "nlminb's default stop leaves max |gradient| ~ 2e-4 here; the re-minimised optimum is in",
               "profile_exact (optimum, dev_min)."))
print(m)

## profile, default rows and full = TRUE (3 timed runs each)
pr_def <- timed_runs('confint(m, method = "profile")', env)
pr_full <- timed_runs('confint(m, method = "profile", full = TRUE)', env)
ci_def <- pr_def$value; ci_full <- pr_full$value
print(ci_def); print(ci_full)
stopifnot(identical(rownames(ci_def), c("(Intercept)", "minedno", "theta_1|site.1")),
          identical(rownames(ci_full), c("(Intercept)", "minedno", "d~(Intercept)", "theta_1|site.1")))
## the rows shared by the two calls: every parameter's profile is computed separately, so they must agree
stopifnot(identical(unname(ci_full[rownames(ci_def), ]), unname(ci_def)))

## the profile itself: check that each half reaches the target (glmmTMB 1.1.5's confint.profile.glmmTMB sets its
## "max profile values less than target" flag inside an inner function, so it never warns)
parm_full <- glmmTMB:::getParms(NULL, m, full = TRUE)
pp <- profile(m, parm = parm_full, level_max = 0.95)
stopifnot(isTRUE(all.equal(unname(confint(pp)), unname(ci_full[, 1:2]), tolerance = 0)))
prof_check <- lapply(split(pp, pp$.par), function(dd) {
  dd <- dd[!duplicated(dd$.focal), ]
  up <- dd$.focal > dd$.focal[which.min(dd$value)]
  list(n_points = nrow(dd), max_value_lower_side = max(dd$value[!up]), max_value_upper_side = max(dd$value[up]),
       min_value = min(dd$value), focal_range = arr(range(dd$.focal)))
})
prof_check <- prof_check[levels(factor(pp$.par))]
cat("profile half maxima vs target", QVAL, ":\n"); str(prof_check)

un <- capture(confint(m, method = "uniroot", full = TRUE))
wa <- capture(confint(m, full = TRUE))
print(un$value); print(wa$value)

## exact roots on the glmmTMB objective (after all confint calls: obj$fn moves obj's internal state)
tmb_exact <- local({
  obj <- m$obj
  start <- m$fit$par; names(start) <- rownames(ci_full)
  tm <- system.time(ex <- exact_profile(function(p) 2 * obj$fn(unname(p)), start, rep(-Inf, 4), rep(Inf, 4),
                                        ci_full[, 1:2], bobyqa_inner))
  c(ex, list(logLik_at_dev_min = -ex$dev_min / 2, fit_deviance = 2 * m$fit$objective, fit_deviance_minus_dev_min = 2 * m$fit$objective - ex$dev_min,
             wall_time_s = round(tm[["elapsed"]], 3),
             note = paste("Cross-check: deviance = 2 * m$obj$fn(par) (glmmTMB's Laplace objective, TMB's inner",
                          "Newton for the random effects) on the outer parameters (beta, beta, log phi, log sd);",
                          "dev_min re-minimised with minqa::bobyqa (rhoend 1e-11) from m$fit$par; each zeta evaluation",
                          "re-minimises the other three with bobyqa (two starts, each restarted once, as for lme4); roots of zeta = -/+ qnorm(0.975) by uniroot",
                          "(tol 1e-10). spline_minus_exact_*: confint(m, method = \"profile\", full = TRUE) minus these",
                          "(includes the effect of nlminb's early stop: the profile is measured from the fit's",
                          "objective, fit_deviance_minus_dev_min above the true minimum).")))
})
print(rbind(lower = tmb_exact$lower, upper = tmb_exact$upper, spl_lo = tmb_exact$spline_minus_exact_lower,
            spl_up = tmb_exact$spline_minus_exact_upper), digits = 8)

est_tmb <- setNames(unname(par), c("(Intercept)", "minedno", "d~(Intercept)", "theta_1|site.1"))
stopifnot(all(est_tmb[1:2] == unname(fe)), abs(est_tmb[3] - log(phi)) < 1e-14, abs(est_tmb[4] - log(re_sd)) < 1e-14)
rows_meaning <- c(`(Intercept)` = "fixed intercept (log mean count, mined = yes)",
                  minedno = "fixed effect minedno (log rate ratio no vs yes)",
                  `d~(Intercept)` = "log phi (nbinom2 dispersion, phi = sigma(fit), Var = mu + mu^2 / phi)",
                  `theta_1|site.1` = "log sd of the site random intercepts")
nat <- function(ci, row) as.numeric(exp(ci[row, 1:2]))
sal_profile_default <- c(ci_block(ci_def, 'confint(m, method = "profile")'),
  list(meaning = arr(rows_meaning[rownames(ci_def)]),
       scale = arr(c("log link", "log link", "log sd")),
       estimate_on_row_scale = arr(est_tmb[rownames(ci_def)]),
       warnings = warn_table(pr_def$warnings), messages = arr(unique(pr_def$messages)),
       n_na = sum(is.na(ci_def[, 1:2])), wall_time_s = pr_def$wall_time_s,
       note = paste("glmmTMB 1.1.5's default parm for profiles leaves out the dispersion parameter (full = FALSE).",
                    "confint's profile method returns only the two bound columns (no Estimate column, unlike its",
                    "Wald and uniroot methods); estimate_on_row_scale = the fit's value on the row's scale (m$fit$par).")))
sal_profile_full <- c(ci_block(ci_full, 'confint(m, method = "profile", full = TRUE)'),
  list(meaning = arr(rows_meaning[rownames(ci_full)]),
       scale = arr(c("log link", "log link", "log phi", "log sd")),
       estimate_on_row_scale = arr(est_tmb[rownames(ci_full)]),
       warnings = warn_table(pr_full$warnings), messages = arr(unique(pr_full$messages)),
       n_na = sum(is.na(ci_full[, 1:2])), wall_time_s = pr_full$wall_time_s,
       profile_check = c(list(call = "pp <- profile(m, parm = glmmTMB:::getParms(NULL, m, full = TRUE), level_max = 0.95); confint(pp) (identical to the above)",
                              target = QVAL), prof_check),
       note = paste("glmmTMB's profile: for each parameter, nlminb re-optimises the others (Laplace objective) on a",
                    "grid out to level_max = level (0.95), value = objective - minimum; confint.profile.glmmTMB",
                    "fits splines::interpSpline(value ~ focal) per side of the minimum and inverts it (backSpline)",
                    "at the target 0.5 * qchisq(0.95, 1) = 1.92073. profile_check: per row (in profile's .par",
                    "order), the largest profile value reached on each side (>= target means the bound is an",
                    "interpolation, not an extrapolation).")))
natural <- list(
  sd_site = list(estimate = re_sd, lower = nat(ci_full, "theta_1|site.1")[1], upper = nat(ci_full, "theta_1|site.1")[2],
                 from_row = "theta_1|site.1", transform = "exp"),
  phi = list(estimate = phi, lower = nat(ci_full, "d~(Intercept)")[1], upper = nat(ci_full, "d~(Intercept)")[2],
             from_row = "d~(Intercept)", transform = "exp"),
  variance_site = list(estimate = re_sd^2, lower = nat(ci_full, "theta_1|site.1")[1]^2,
                       upper = nat(ci_full, "theta_1|site.1")[2]^2, from_row = "theta_1|site.1", transform = "exp(2 x)"),
  rate_ratio_minedno = list(estimate = exp(fe[["minedno"]]), lower = nat(ci_full, "minedno")[1],
                            upper = nat(ci_full, "minedno")[2], from_row = "minedno", transform = "exp"),
  note = paste("Profile intervals are invariant under monotone reparametrisation, so exp() of the log-scale bounds",
               "are the profile bounds on the natural scale (up to the spline interpolation, which glmmTMB does on",
               "the log scale). Computed here from confint(m, method = \"profile\", full = TRUE)."))
cases$salamanders_nb2 <- list(
  data = list(file = "tests/data/salamanders_mined.csv", source = "glmmTMB::Salamanders (glmmTMB 1.1.5), 644 rows, R's row order",
              columns = arr(c("count", "mined", "site")),
              note = "count integer; mined and site as their labels; = those columns of tests/data/salamanders.csv"),
  factor_levels = list(mined = arr(levels(Salamanders$mined)), site = arr(levels(Salamanders$site))),
  factor_note = "mined levels in R: yes, no (baseline yes, coefficient minedno); site is an ordered factor in R (levels R-1..R-12, VF-1..VF-11), used only for grouping",
  fit = sal_fit,
  profile = sal_profile_default,
  profile_full = sal_profile_full,
  natural_scale = natural,
  profile_exact = tmb_exact,
  natural_scale_exact = list(sd_site = arr(exp(c(tmb_exact$lower[4], tmb_exact$upper[4]))),
                             phi = arr(exp(c(tmb_exact$lower[3], tmb_exact$upper[3]))),
                             note = "exp() of profile_exact's log sd / log phi bounds"),
  uniroot_full = c(ci_block(un$value, 'confint(m, method = "uniroot", full = TRUE)'),
                   list(warnings = warn_table(un$warnings),
                        note = "TMB::tmbroot: root of the profile (re-optimised) at the same target, no spline; a cross-check of the spline interpolation")),
  wald_full = c(ci_block(wa$value, 'confint(m, full = TRUE)'),
                list(warnings = warn_table(wa$warnings),
                     note = paste("Wald, for comparison; glmmTMB names its rows cond.(Intercept), cond.minedno, sigma",
                                  "(= phi, natural scale: Wald on log phi, exponentiated), cond.Std.Dev.(Intercept)|site",
                                  "(natural scale: Wald on log sd, exponentiated)"))))

## ---------------------------------------------------------------- write

out <- list(
  versions = versions,
  note = paste(
    "Profile-likelihood confidence intervals (95 %) for GLMMs, computed by tests/data/r/glmm_profile_references.R",
    "(see its header for the exact calls). lme4 cases (poisson_slope: default, tight, tight_nlopt; cbpp_agq): fit,",
    "parameters (confint's rows .sig01.. then fixef, their lme4 oldNames = FALSE names, meaning and estimate on the",
    "sd/cor scale) and profile (rows, lower = 2.5 %, upper = 97.5 %, null where NA, warnings with counts, wall time).",
    ".sigNN order (lme4's Cv_to_Sv): per random-effect term the lower triangle of its sd/cor matrix column by column",
    "(diagonal sd, off-diagonal cor); no .sigma for these GLMMs. glmmTMB case (salamanders_nb2): profile (glmmTMB's",
    "default rows, log scale for the sd), profile_full (adds log phi), natural_scale (exp of those bounds: site sd,",
    "phi), plus uniroot and Wald intervals for comparison. Wall times: elapsed seconds, median of 3 runs, 2 shared",
    "CPU cores; not reproducible. The bounds are."),
  cases = cases)

f <- file.path(OUT, "glmm_profile_references.json")
write_json_file(out, f)
back <- fromJSON(f, simplifyVector = FALSE)
nn <- function(v) vapply(v, function(e) if (is.null(e)) NA_real_ else e, 0)
stopifnot(identical(nn(back$cases$poisson_slope$tight$profile$upper), as.vector(cases$poisson_slope$tight$profile$upper)),
          identical(nn(back$cases$salamanders_nb2$profile_full$lower), as.vector(cases$salamanders_nb2$profile_full$lower)))

## ---------------------------------------------------------------- summary

cat("\n==== summary (95 % profile intervals)\n")
show <- function(id, blk, rows, meaning, est) {
  cat(sprintf("\n%s  (profile median %.2f s)\n", id, blk$wall_time_s$median))
  print(data.frame(row = rows, meaning = meaning, estimate = est, lower = unclass(blk$lower), upper = unclass(blk$upper)),
        digits = 7, row.names = FALSE)
  if (length(blk$warnings$message)) cat("  warnings:", paste0(blk$warnings$message, " (x", blk$warnings$count, ")", collapse = "; "), "\n")
}
for (v in names(calls_ps)) {
  b <- cases$poisson_slope[[v]]
  cat(sprintf("\npoisson_slope/%s: logLik %.10f", v, b$fit$logLik))
  show(paste0("poisson_slope/", v), b$profile, b$parameters$rows, b$parameters$meaning, unclass(b$parameters$estimate))
}
str(cases$poisson_slope$tight_minus_default); str(cases$poisson_slope$tight_nlopt_minus_default)
cat(sprintf("\ncbpp_agq: logLik %.10f", cases$cbpp_agq$fit$logLik))
show("cbpp_agq", cases$cbpp_agq$profile, cases$cbpp_agq$parameters$rows, cases$cbpp_agq$parameters$meaning,
     unclass(cases$cbpp_agq$parameters$estimate))
cat(sprintf("\nsalamanders_nb2: logLik %.10f, site sd %.7f, phi %.7f\n", sal_fit$logLik, re_sd, phi))
show("salamanders_nb2 profile (default rows)", sal_profile_default, rownames(ci_def), rows_meaning[rownames(ci_def)], est_tmb[rownames(ci_def)])
show("salamanders_nb2 profile full = TRUE", sal_profile_full, rownames(ci_full), rows_meaning[rownames(ci_full)], est_tmb[rownames(ci_full)])
cat("\nnatural scale:\n")
for (k in c("sd_site", "phi", "rate_ratio_minedno"))
  cat(sprintf("  %-20s %.7f  [%.7f, %.7f]\n", k, natural[[k]]$estimate, natural[[k]]$lower, natural[[k]]$upper))
cat("\nwrote", f, f_ps, f_sal, "\n")
