## lme4's confint() on fitted mixed models (Wald, profile, parametric bootstrap percentile) plus the bootstrap
## distribution of the parameters and the wall times, for the Python library's tests.
##
## Run from the repository root:   Rscript tests/data/r/confint_references.R   (writes tests/data/confint_references.json;
## a few minutes on 2 shared cores, nearly all of it the 2 x 1000 glmer refits of the cbpp bootstrap)
##
## Data (read from the repository's CSVs, each checked value by value, with ==, against lme4's own data set, and
## fitted with lme4's factor level orders):
##  - bayesmix/datasets/sleepstudy.csv = lme4::sleepstudy (180 rows; Subject levels "308".."372")
##  - bayesmix/datasets/Dyestuff2.csv  = lme4::Dyestuff2  (30 rows; Batch levels "A".."F")
##  - bayesmix/datasets/cbpp.csv       = lme4::cbpp       (56 rows; herd "1".."15", period "1".."4")
##
## Exact calls (default controls everywhere: lmer's nloptwrap, glmer's bobyqa + Nelder_Mead, Laplace):
##  sleep:     fm <- lmer(Reaction ~ Days + (Days | Subject), data = sleepstudy)                  (REML)
##  sleep_ml:  fm <- lmer(Reaction ~ Days + (Days | Subject), data = sleepstudy, REML = FALSE)
##  dyestuff2: fm <- lmer(Yield ~ 1 + (1 | Batch), data = Dyestuff2, REML = FALSE)       (singular: sd(Batch) = 0)
##  cbpp:      fm <- glmer(cbind(incidence, size - incidence) ~ period + (1 | herd), family = binomial, data = cbpp)
## and on each fit:
##  confint(fm, method = "Wald")
##  confint(fm, method = "profile")                           (3 runs, timed with system.time; all 3 must agree;
##                                                             lme4 profiles the ML deviance even for a REML fit:
##                                                             its devfun2 calls refitML(fm) first)
##  confint(fm, method = "boot", nsim = 1000, seed = 1)       (boot.type "perc", lme4's default; timed, 1 run)
##  b <- bootMer(fm, function(m) { vc <- as.data.frame(VarCorr(m)); c(vc$sdcor, fixef(m)) }, nsim = 1000, seed = 1)
##     -> per column: mean, sd (denominator n - 1), quantile(type = 7) at 2.5% / 97.5%, over the non-NA replicates.
##     With the same seed bootMer simulates the same 1000 responses and refits the same models as confint's bootstrap
##     (only the statistic differs: confint's is c(.sig.., .sigma, fixef) in lme4's Cv_to_Sv order, this one is in
##     as.data.frame(VarCorr) order); checked here: boot::boot.ci(b, type = "perc") on the reordered columns
##     reproduces confint's bounds (to rounding: the two
##     statistics compute the same sd / cor in different floating-point order, ~1e-15 apart).
##
## Row names: .sig01, .sig02, ... follow lme4's Cv_to_Sv order: per random-effect term, the lower triangle of its
## q x q sd/cor matrix column by column (diagonal = sd, off-diagonal = correlation), then .sigma (residual sd; LMMs
## only). For (Days | Subject): .sig01 = sd (Intercept), .sig02 = cor((Intercept), Days), .sig03 = sd Days.
## as.data.frame(VarCorr) instead lists per group all sds, then the correlations, then the residual.
##
## Numbers are written as the shortest decimal that round-trips (15-17 significant digits; jsonlite 1.8.4 alone
## stops at 15 even with digits = NA); helpers copied from sequential_references.R.
##
## Tested with R 4.2.2, lme4 1.1-31, Matrix 1.5-3, boot 1.3-28.1, jsonlite 1.8.4 (Debian bookworm packages).
## The bounds are reproducible run to run (default RNG: Mersenne-Twister / Inversion / Rejection); the wall times
## of course are not (they were measured on 2 CPU cores shared with other jobs).

suppressPackageStartupMessages({
  library(lme4)
  library(boot)
  library(jsonlite)
})

OUT <- file.path("tests", "data")
SHARED <- file.path("bayesmix", "datasets")
stopifnot(dir.exists(OUT), file.exists(file.path(SHARED, "sleepstudy.csv")), file.exists(file.path(SHARED, "cbpp.csv")),
          file.exists(file.path(SHARED, "Dyestuff2.csv")))

RNGkind("Mersenne-Twister", "Inversion", "Rejection")
versions <- list(
  R = R.version.string,
  lme4 = as.character(packageVersion("lme4")),
  Matrix = as.character(packageVersion("Matrix")),
  boot = as.character(packageVersion("boot")),
  jsonlite = as.character(packageVersion("jsonlite")),
  RNGkind = paste(RNGkind(), collapse = " / ")
)

NSIM <- 1000L
SEED <- 1L
N_PROFILE_RUNS <- 3L

## ---------------------------------------------------------------- helpers (from sequential_references.R)

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
write_json_file <- function(out, file) {
  js <- toJSON(prep_json(out), digits = NA, auto_unbox = TRUE, null = "null", na = "null", pretty = TRUE,
               json_verbatim = TRUE)
  writeLines(js, file)
}

## ---------------------------------------------------------------- data, checked against lme4's

chk <- function(csv, rdata, cols) {
  stopifnot(nrow(csv) == nrow(rdata))
  for (cc in cols) {
    a <- rdata[[cc]]; b <- csv[[cc]]
    ok <- if (is.factor(a)) identical(as.character(a), as.character(b)) else isTRUE(all(as.numeric(b) == as.numeric(a)))
    if (!ok) stop("column ", cc, " of the CSV differs from lme4's data")
  }
  invisible(TRUE)
}

ss <- read.csv(file.path(SHARED, "sleepstudy.csv"), colClasses = c(Subject = "character"))
ss$Subject <- factor(ss$Subject, levels(lme4::sleepstudy$Subject))
chk(ss, lme4::sleepstudy, c("Reaction", "Days", "Subject"))
stopifnot(!anyNA(ss$Subject))
sleepstudy <- ss

dy <- read.csv(file.path(SHARED, "Dyestuff2.csv"), colClasses = c(Batch = "character"))
dy$Batch <- factor(dy$Batch, levels(lme4::Dyestuff2$Batch))
chk(dy, lme4::Dyestuff2, c("Batch", "Yield"))
stopifnot(!anyNA(dy$Batch))
Dyestuff2 <- dy

cb <- read.csv(file.path(SHARED, "cbpp.csv"), colClasses = c(herd = "character", period = "character"))
cb$herd <- factor(cb$herd, levels(lme4::cbpp$herd))
cb$period <- factor(cb$period, levels(lme4::cbpp$period))
chk(cb, lme4::cbpp, c("herd", "incidence", "size", "period"))
stopifnot(!anyNA(cb$herd), !anyNA(cb$period))
cbpp <- cb
cat("CSV data match lme4's sleepstudy, Dyestuff2, cbpp value by value\n")

## ---------------------------------------------------------------- parameter names and meanings

## lme4's .sigNN / .sigma rows (Cv_to_Sv order), each with (grp, var1, var2) as in as.data.frame(VarCorr)
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

## ---------------------------------------------------------------- one case

boot_stat <- function(m) { vc <- as.data.frame(VarCorr(m)); c(vc$sdcor, fixef(m)) }
BOOT_STAT_TEXT <- "function(m) { vc <- as.data.frame(VarCorr(m)); c(vc$sdcor, fixef(m)) }"

ci_block <- function(ci, call) {
  list(call = call, rows = arr(rownames(ci)), lower = arr(as.double(ci[, 1])), upper = arr(as.double(ci[, 2])),
       level_columns = arr(colnames(ci)))
}

run_case <- function(id, call, data_note, factor_levels, do_boot = TRUE) {
  cat("\n==== ", id, ": ", call, "\n", sep = "")
  capF <- capture(eval(parse(text = call))); fm <- capF$value
  vc <- as.data.frame(VarCorr(fm))
  st <- sig_table(fm)
  vn <- lme4:::profnames(fm, TRUE, useSc = as.logical(fm@devcomp$dims[["useSc"]]))
  stopifnot(identical(vn, st$name))
  new_names <- lme4:::profnames(fm, FALSE, useSc = as.logical(fm@devcomp$dims[["useSc"]]))
  vc_pos <- match(key(st), key(vc)); stopifnot(!anyNA(vc_pos))
  fe <- fixef(fm)
  estimate <- c(vc$sdcor[vc_pos], fe)
  param_rows <- c(st$name, names(fe))

  fit <- list(
    call = call, REML = isREML(fm), logLik = as.numeric(logLik(fm)), fixef_names = arr(names(fe)),
    fixef = arr(fe), theta = arr(getME(fm, "theta")), sigma = if (isLMM(fm)) sigma(fm) else NULL,
    varcorr = list(grp = arr(vc$grp), var1 = arr(vc$var1), var2 = arr(vc$var2), vcov = arr(vc$vcov),
                   sdcor = arr(vc$sdcor)),
    is_singular = isSingular(fm), warnings = arr(capF$warnings),
    conv_messages = arr(unlist(fm@optinfo$conv$lme4$messages)))
  parameters <- list(
    rows = arr(param_rows),
    new_names = arr(c(new_names, names(fe))),
    meaning = arr(c(meaning(st$grp, st$var1, st$var2), paste("fixed effect", names(fe)))),
    varcorr_row = arr(c(vc_pos, rep(NA_integer_, length(fe)))),
    estimate = arr(estimate),
    note = paste("rows: the names confint gives (oldNames = TRUE, the default); new_names: with oldNames = FALSE;",
                 "varcorr_row: 1-based row of fit.varcorr (as.data.frame(VarCorr(fm))) that the parameter is;",
                 "estimate: its value at the fit (sd / cor scale, not theta)"))

  ## Wald
  capW <- capture(confint(fm, method = "Wald"))
  wald <- ci_block(capW$value, 'confint(fm, method = "Wald")')
  wald$warnings <- arr(capW$warnings)
  wald$note <- if (isGLMM(fm)) "fixed effects: fixef +- qnorm(0.975) * sqrt(diag(vcov(fm))) (glmer's vcov: Hessian-based, use.hessian = TRUE); variance-parameter rows NA (null)" else
    "fixed effects: fixef +- qnorm(0.975) * sqrt(diag(vcov(fm))); variance-parameter rows NA (null)"
  stopifnot(identical(rownames(capW$value), param_rows))

  ## profile, 3 timed runs
  prof_runs <- vector("list", N_PROFILE_RUNS); times <- numeric(N_PROFILE_RUNS); ptimes <- list()
  for (r in seq_len(N_PROFILE_RUNS)) {
    tm <- system.time(prof_runs[[r]] <- capture(confint(fm, method = "profile")))
    times[r] <- tm[["elapsed"]]; ptimes[[r]] <- tm
    cat(sprintf("  profile run %d: %.3f s elapsed\n", r, times[r]))
  }
  for (r in 2:N_PROFILE_RUNS) stopifnot(identical(prof_runs[[r]]$value, prof_runs[[1]]$value))
  cip <- prof_runs[[1]]$value
  stopifnot(identical(rownames(cip), param_rows))
  profile <- ci_block(cip, 'confint(fm, method = "profile")')
  profile$warnings <- arr(unique(prof_runs[[1]]$warnings))
  profile$note <- paste("lme4 profiles the ML deviance: profile.merMod's devfun2 starts with refitML(fm), so for a",
                        "REML fit the profile intervals are those of the ML refit (sleep vs sleep_ml agree to the",
                        "optimizer's tolerance, ~1e-5), while its Wald and bootstrap intervals use the REML fit.",
                        "Intervals from the likelihood-ratio statistic, lme4's default spline interpolation of the profile.")
  profile$wall_time_s <- list(runs = arr(round(times, 3)), median = round(median(times), 3),
                              user_plus_system_median = round(median(vapply(ptimes, function(t) t[["user.self"]] + t[["sys.self"]], 0)), 3),
                              note = paste("system.time(confint(fm, method = \"profile\"))[[\"elapsed\"]], 3 runs",
                                           "(R 4.2.2, 2 CPU cores shared with other jobs)"))
  print(cip)

  boot_out <- NULL
  if (do_boot) {
    tm <- system.time(capB <- capture(confint(fm, method = "boot", nsim = NSIM, seed = SEED)))
    cib <- capB$value
    cat(sprintf("  boot confint: %.3f s elapsed\n", tm[["elapsed"]]))
    print(cib)
    stopifnot(identical(rownames(cib), param_rows))
    boot_out <- ci_block(cib, sprintf('confint(fm, method = "boot", nsim = %d, seed = %d)', NSIM, SEED))
    boot_out$boot_type <- "perc"
    boot_out$warnings <- arr(unique(capB$warnings))
    boot_out$wall_time_s <- list(elapsed = round(tm[["elapsed"]], 3), user_plus_system = round(tm[["user.self"]] + tm[["sys.self"]], 3),
                                 note = "system.time(...)[[\"elapsed\"]], 1 run (2 CPU cores shared with other jobs)")
    boot_out$note <- paste("percentile intervals from boot::boot.ci(type = \"perc\") on the bootMer replicates of",
                           "c(.sig.., .sigma, fixef): boot.ci's percentile method takes order statistics (R + 1) * alpha",
                           "with interpolation on the normal-quantile scale (boot:::norm.inter), so it differs slightly",
                           "from quantile(type = 7) (distribution.q025 / q975). Parametric bootstrap: simulate(fm,",
                           "nsim = 1000, use.u = FALSE) (new random effects), each replicate refitted with refit().")

    ## the bootstrap distribution
    tm2 <- system.time(capD <- capture(bootMer(fm, boot_stat, nsim = NSIM, seed = SEED)))
    b <- capD$value
    cat(sprintf("  bootMer: %.3f s elapsed\n", tm2[["elapsed"]]))
    cols <- c(sprintf("%s|%s|%s", vc$grp, ifelse(is.na(vc$var1), "", vc$var1), ifelse(is.na(vc$var2), "", vc$var2)),
              names(fe))
    tt <- b$t
    stopifnot(ncol(tt) == length(cols), max(abs(b$t0 - c(vc$sdcor, fe))) == 0)
    n_ok <- colSums(!is.na(tt))
    col_to_row <- c(st$name[match(seq_len(nrow(vc)), vc_pos)], names(fe))
    ## check: the same replicates as confint's bootstrap -> boot.ci on the reordered columns gives confint's bounds
    ## (as.data.frame(VarCorr) gives cor = NaN when one of the two sds is exactly 0, Cv_to_Sv gives 0: set those to 0)
    tt2 <- tt; is_cor <- c(!is.na(vc$var2), rep(FALSE, length(fe)))
    nan_cor <- is.nan(tt2) & matrix(is_cor, nrow(tt2), ncol(tt2), byrow = TRUE)
    tt2[nan_cor] <- 0
    b2 <- b; b2$t <- tt2[, c(vc_pos, nrow(vc) + seq_along(fe)), drop = FALSE]
    b2$t0 <- estimate; names(b2$t0) <- param_rows
    ci_chk <- lme4:::confint.bootMer(b2, type = "perc")
    chk_diff <- max(abs(ci_chk - cib))
    cat(sprintf("  boot.ci on the bootMer replicates vs confint boot: max |diff| = %g\n", chk_diff))
    stopifnot(chk_diff <= 1e-12 * max(1, max(abs(cib))))   # as.data.frame(VarCorr) vs Cv_to_Sv: last-bit rounding
    boot_out$distribution <- list(
      call = sprintf("b <- bootMer(fm, %s, nsim = %d, seed = %d)", BOOT_STAT_TEXT, NSIM, SEED),
      columns = arr(cols),
      column_meaning = arr(c(meaning(vc$grp, vc$var1, vc$var2), paste("fixed effect", names(fe)))),
      column_confint_row = arr(col_to_row),
      mean = arr(colMeans(tt, na.rm = TRUE)),
      sd = arr(apply(tt, 2, sd, na.rm = TRUE)),
      q025 = arr(apply(tt, 2, quantile, probs = 0.025, type = 7, na.rm = TRUE, names = FALSE)),
      q975 = arr(apply(tt, 2, quantile, probs = 0.975, type = 7, na.rm = TRUE, names = FALSE)),
      n_ok = arr(as.integer(n_ok)),
      n_failed = as.integer(attr(b, "bootFail")),
      n_exactly_zero = arr(as.integer(colSums(tt == 0, na.rm = TRUE))),
      replicate_warnings = lapply(attr(b, "boot.all.msgs"), function(tb)
        if (length(tb)) list(message = arr(names(tb)), count = arr(as.integer(tb))) else list(message = arr(NULL), count = arr(integer(0)))),
      wall_time_s = round(tm2[["elapsed"]], 3),
      check_boot_ci_equals_confint = chk_diff,
      n_nan_cor_set_to_zero_for_check = sum(nan_cor),
      note = paste("columns in as.data.frame(VarCorr(fm)) order (grp|var1|var2) then fixef; column_confint_row:",
                   "the confint row that column is. mean / sd (n - 1 denominator) / quantile(type = 7) over the",
                   "non-NA replicates. Same seed, same simulated responses and refits as the confint bootstrap",
                   "(checked: boot.ci(type = \"perc\") on these columns reproduces its bounds to rounding, ~1e-15;",
                   "as.data.frame(VarCorr) and Cv_to_Sv compute the sd / cor in a different floating-point order;",
                   "check_boot_ci_equals_confint = max |difference|). Monte Carlo error: sd / sqrt(1000) for the mean;",
                   "the 2.5% / 97.5% quantiles are far noisier (roughly 0.1 - 0.2 sd).",
                   "A replicate whose fit has an sd exactly 0 gets cor = NaN from as.data.frame(VarCorr) (excluded",
                   "here: n_ok) but 0 from Cv_to_Sv (included in confint's percentile interval); the check sets",
                   "those NaN to 0 (n_nan_cor_set_to_zero_for_check)."))
    print(rbind(mean = colMeans(tt, na.rm = TRUE), sd = apply(tt, 2, sd, na.rm = TRUE)))
  }

  list(data = data_note, factor_levels = factor_levels, fit = fit, parameters = parameters,
       wald = wald, profile = profile, boot = boot_out)
}

cases <- list()
cases$sleep <- run_case("sleep", "lmer(Reaction ~ Days + (Days | Subject), data = sleepstudy)",
  "bayesmix/datasets/sleepstudy.csv (= lme4::sleepstudy, 180 rows)", list(Subject = arr(levels(sleepstudy$Subject))))
cases$sleep_ml <- run_case("sleep_ml", "lmer(Reaction ~ Days + (Days | Subject), data = sleepstudy, REML = FALSE)",
  "bayesmix/datasets/sleepstudy.csv (= lme4::sleepstudy, 180 rows)", list(Subject = arr(levels(sleepstudy$Subject))))
cases$dyestuff2 <- run_case("dyestuff2", "lmer(Yield ~ 1 + (1 | Batch), data = Dyestuff2, REML = FALSE)",
  "bayesmix/datasets/Dyestuff2.csv (= lme4::Dyestuff2, 30 rows)", list(Batch = arr(levels(Dyestuff2$Batch))))
cases$cbpp <- run_case("cbpp",
  "glmer(cbind(incidence, size - incidence) ~ period + (1 | herd), family = binomial, data = cbpp)",
  "bayesmix/datasets/cbpp.csv (= lme4::cbpp, 56 rows)",
  list(herd = arr(levels(cbpp$herd)), period = arr(levels(cbpp$period))))

out <- list(
  versions = versions,
  note = paste(
    "lme4 confint() references, computed by tests/data/r/confint_references.R (see its header for the exact calls).",
    "Per case: fit (the model), parameters (confint's row names .sig01.. / .sigma / fixef, their meaning, and estimates),",
    "wald, profile and boot (rows, lower = 2.5 %, upper = 97.5 %; null where confint gives NA), profile and boot wall",
    "times (elapsed seconds; 2 shared CPU cores), and boot.distribution: mean / sd / 2.5 % and 97.5 % quantiles of",
    "the 1000 parametric-bootstrap replicates. .sigNN order (lme4's Cv_to_Sv): per random-effect term the lower",
    "triangle of its sd/cor matrix column by column (diagonal sd, off-diagonal cor), then .sigma (LMMs only).",
    "The bootstrap values depend on R's RNG stream (set.seed(1), Mersenne-Twister) and cannot be reproduced",
    "draw-for-draw outside R: compare them as distributions (Monte Carlo error), not exactly.",
    "Wall times are rounded to ms. Default controls for every fit (the cbpp fit here is glmer's default, not the tightened fit of verbs_references.json)."),
  cases = cases)

f <- file.path(OUT, "confint_references.json")
write_json_file(out, f)
back <- fromJSON(f, simplifyVector = FALSE)
stopifnot(identical(names(back$cases), names(cases)))
for (id in names(cases)) {
  for (m in c("profile", "wald")) {
    lo <- vapply(back$cases[[id]][[m]]$lower, function(v) if (is.null(v)) NA_real_ else v, 0)
    stopifnot(identical(lo, as.vector(cases[[id]][[m]]$lower)))
  }
}

cat("\n==== summary (lower, upper)\n")
for (id in names(cases)) {
  cc <- cases[[id]]
  cat(sprintf("\n%s  (profile median %.2f s; boot %s s)\n", id, cc$profile$wall_time_s$median,
              if (is.null(cc$boot)) "-" else sprintf("%.1f", cc$boot$wall_time_s$elapsed)))
  tab <- data.frame(row = cc$parameters$rows, meaning = cc$parameters$meaning,
                    prof_lo = unclass(cc$profile$lower), prof_hi = unclass(cc$profile$upper),
                    boot_lo = if (is.null(cc$boot)) NA else unclass(cc$boot$lower),
                    boot_hi = if (is.null(cc$boot)) NA else unclass(cc$boot$upper))
  print(tab, digits = 6, row.names = FALSE)
}
cat("\nwrote", f, "\n")
