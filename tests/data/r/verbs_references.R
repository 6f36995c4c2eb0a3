## lme4's "verbs" on fitted mixed models (fixef, logLik, coef, fitted, predict, residuals of each type, sigma,
## nobs, ngrps, vcov, df.residual, and a Monte-Carlo reference for simulate), for the Python library's tests.
##
## Run from the repository root:   Rscript tests/data/r/verbs_references.R   (writes tests/data/verbs_references.json;
## a few seconds, most of it the 4 x 2000 simulations)
##
## Data (read from the repository's CSVs, each checked value by value, with ==, against lme4's own data set, and
## the fits made on the CSV data with lme4's factor level orders; every per-row array is in the CSV's row order,
## which is also lme4's row order):
##  - sleep:  bayesmix/datasets/sleepstudy.csv = lme4::sleepstudy (180 rows; Subject levels "308".."372")
##  - cbpp:   bayesmix/datasets/cbpp.csv = lme4::cbpp (56 rows; herd "1".."15", period "1".."4")
##  - grouse: tests/data/grouseticks.csv = lme4::grouseticks (403 rows; already in the repository, written by
##            tests/data/r/issue18_references.R, NOT rewritten here; YEAR levels "95","96","97", BROOD 118 levels
##            "501".., LOCATION 63 levels "1".."63", all in numeric order; its cHEIGHT column is unused)
##
## Exact calls:
##  sleep:  lmer(Reaction ~ Days + (Days | Subject), data = sleepstudy)                    (REML, default control)
##  cbpp:   glmer(cbind(incidence, size - incidence) ~ period + (1 | herd), family = binomial, data = cbpp,
##                control = glmerControl(tolPwrss = 1e-10, optimizer = "bobyqa", optCtrl = list(rhoend = 1e-10)))
##  grouse: glmer(TICKS ~ YEAR + scale(HEIGHT) + (1 | BROOD) + (1 | LOCATION), family = poisson, data = grouseticks,
##                control = glmerControl(tolPwrss = 1e-10, optimizer = "bobyqa", optCtrl = list(rhoend = 1e-10)))
## and on each fit: fixef(fit), logLik(fit), coef(fit), ranef(fit), fitted(fit), predict(fit, re.form = NA,
## type = "response"), residuals(fit, type = ...), residuals(fit, scaled = TRUE) (LMM), sigma(fit), nobs(fit),
## ngrps(fit), vcov(fit) (and vcov(fit, use.hessian = FALSE) for the GLMMs), df.residual(fit), getME(fit, "theta"),
## simulate(fit, nsim = 2000, seed = 1) and simulate(fit, nsim = 2000, seed = 1, use.u = TRUE).
##
## Numbers are written as the shortest decimal that round-trips (15-17 significant digits; jsonlite 1.8.4 alone
## stops at 15 even with digits = NA); helpers copied from sequential_references.R.
##
## Tested with R 4.2.2, lme4 1.1-31, Matrix 1.5-3, jsonlite 1.8.4 (Debian bookworm packages).

suppressPackageStartupMessages({
  library(lme4)
  library(jsonlite)
})

OUT <- file.path("tests", "data")
SHARED <- file.path("bayesmix", "datasets")
stopifnot(dir.exists(OUT), file.exists(file.path(SHARED, "sleepstudy.csv")), file.exists(file.path(SHARED, "cbpp.csv")),
          file.exists(file.path(OUT, "grouseticks.csv")))

versions <- list(
  R = R.version.string,
  lme4 = as.character(packageVersion("lme4")),
  Matrix = as.character(packageVersion("Matrix")),
  jsonlite = as.character(packageVersion("jsonlite"))
)

NSIM <- 2000L
SEED <- 1L
NSIM_ROWS <- 5L

## ---------------------------------------------------------------- helpers (from sequential_references.R)

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

## a matrix as {rownames, colnames, values (row-major list of rows)}
mat <- function(M) {
  M <- as.matrix(M)
  list(rownames = arr(rownames(M)), colnames = arr(colnames(M)),
       values = lapply(seq_len(nrow(M)), function(i) arr(as.double(M[i, ]))))
}
## a data frame of numbers (coef / ranef of one grouping factor) as {levels, columns, values (row-major)}
tab <- function(D) {
  M <- as.matrix(D)
  list(levels = arr(rownames(D)), columns = arr(colnames(D)),
       values = lapply(seq_len(nrow(M)), function(i) arr(as.double(M[i, ]))))
}
per_factor <- function(L, f) { y <- lapply(L, f); names(y) <- names(L); y }

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

cb <- read.csv(file.path(SHARED, "cbpp.csv"), colClasses = c(herd = "character", period = "character"))
cb$herd <- factor(cb$herd, levels(lme4::cbpp$herd))
cb$period <- factor(cb$period, levels(lme4::cbpp$period))
chk(cb, lme4::cbpp, c("herd", "incidence", "size", "period"))
stopifnot(!anyNA(cb$herd), !anyNA(cb$period))
cbpp <- cb

gt <- read.csv(file.path(OUT, "grouseticks.csv"),
               colClasses = c(INDEX = "character", BROOD = "character", YEAR = "character", LOCATION = "character"))
for (cc in c("INDEX", "BROOD", "YEAR", "LOCATION")) {
  gt[[cc]] <- factor(gt[[cc]], levels(lme4::grouseticks[[cc]]))
  stopifnot(!anyNA(gt[[cc]]))
}
chk(gt, lme4::grouseticks, c("INDEX", "TICKS", "BROOD", "HEIGHT", "YEAR", "LOCATION"))
grouseticks <- gt
cat("CSV data match lme4's sleepstudy, cbpp, grouseticks value by value\n")

## ---------------------------------------------------------------- cases

TIGHT <- 'glmerControl(tolPwrss = 1e-10, optimizer = "bobyqa", optCtrl = list(rhoend = 1e-10))'
CASES <- list(
  sleep = list(
    call = "lmer(Reaction ~ Days + (Days | Subject), data = sleepstudy)",
    data = "sleepstudy", data_file = "bayesmix/datasets/sleepstudy.csv", response = "Reaction",
    factors = c("Subject"), glmm = FALSE),
  cbpp = list(
    call = paste0("glmer(cbind(incidence, size - incidence) ~ period + (1 | herd), family = binomial, data = cbpp, ",
                  "control = ", TIGHT, ")"),
    data = "cbpp", data_file = "bayesmix/datasets/cbpp.csv", response = "incidence / size (proportion; weights size)",
    factors = c("herd", "period"), glmm = TRUE),
  grouse = list(
    call = paste0("glmer(TICKS ~ YEAR + scale(HEIGHT) + (1 | BROOD) + (1 | LOCATION), family = poisson, ",
                  "data = grouseticks, control = ", TIGHT, ")"),
    data = "grouseticks", data_file = "tests/data/grouseticks.csv", response = "TICKS",
    factors = c("INDEX", "BROOD", "YEAR", "LOCATION"), glmm = TRUE)
)

sim_summary <- function(fit, use_u, binomial_matrix) {
  s <- if (use_u) simulate(fit, nsim = NSIM, seed = SEED, use.u = TRUE) else simulate(fit, nsim = NSIM, seed = SEED)
  stopifnot(ncol(s) == NSIM)
  ## binomial with a cbind() response: each sim_k column is a 2-column matrix (successes, failures)
  succ <- if (binomial_matrix) sapply(s, function(col) as.matrix(col)[seq_len(NSIM_ROWS), 1])
          else as.matrix(s)[seq_len(NSIM_ROWS), , drop = FALSE]
  stopifnot(nrow(succ) == NSIM_ROWS, ncol(succ) == NSIM)
  res <- list(mean = arr(rowMeans(succ)), var = arr(apply(succ, 1, var)))
  if (binomial_matrix) {
    fail <- sapply(s, function(col) as.matrix(col)[seq_len(NSIM_ROWS), 2])
    stopifnot(all(succ + fail == cbpp$size[seq_len(NSIM_ROWS)]))
  }
  res
}

run_case <- function(id, cs) {
  fit <- eval(parse(text = cs$call))
  warn <- unlist(fit@optinfo$conv$lme4$messages)
  ll <- logLik(fit)
  fe <- fixef(fit)
  cf <- coef(fit); re <- ranef(fit)
  data <- get(cs$data)
  out <- list(
    r_call = cs$call,
    data = paste0(cs$data_file, " (", nrow(data), " rows; = lme4::", cs$data, ", checked value by value)"),
    n_rows = nrow(data),
    factor_levels = per_factor(setNames(as.list(cs$factors), cs$factors), function(f) arr(levels(data[[f]]))),
    fixef = list(names = arr(names(fe)), values = arr(as.double(fe))),
    logLik = as.numeric(ll), logLik_df = as.integer(attr(ll, "df")),
    REML = isREML(fit),
    theta = list(names = arr(names(getME(fit, "theta"))), values = arr(as.double(getME(fit, "theta")))),
    coef = per_factor(cf, tab),
    ranef = per_factor(re, tab),
    fitted = arr(as.double(fitted(fit))),
    predict_population = arr(as.double(predict(fit, re.form = NA, type = "response"))),
    predict_link = arr(as.double(predict(fit))),
    predict_link_population = arr(as.double(predict(fit, re.form = NA))),
    sigma = sigma(fit),
    nobs = nobs(fit),
    ngrps = list(names = arr(names(ngrps(fit))), values = arr(as.integer(ngrps(fit)))),
    vcov = mat(as.matrix(vcov(fit))),
    df_residual = as.double(df.residual(fit)),
    lme4_convergence_messages = arr(warn)
  )
  if (cs$glmm) {
    out$residuals <- list(
      response = arr(as.double(residuals(fit, type = "response"))),
      pearson = arr(as.double(residuals(fit, type = "pearson"))),
      deviance = arr(as.double(residuals(fit, type = "deviance"))),
      working = arr(as.double(residuals(fit, type = "working"))),
      default = arr(as.double(residuals(fit))))
    vw <- character()
    V0 <- withCallingHandlers(vcov(fit, use.hessian = FALSE),
                              warning = function(w) { vw <<- c(vw, conditionMessage(w)); invokeRestart("muffleWarning") })
    out$vcov_use_hessian_false <- mat(as.matrix(V0))
    out$vcov_use_hessian_false_warnings <- arr(gsub("\n", " ", vw))
    out$prior_weights <- arr(as.double(weights(fit)))
  } else {
    out$residuals <- list(
      response = arr(as.double(residuals(fit))),
      pearson = arr(as.double(residuals(fit, type = "pearson"))),
      scaled = arr(as.double(residuals(fit, scaled = TRUE))),
      deviance = arr(as.double(residuals(fit, type = "deviance"))))
  }
  ## checks of what the quantities are
  y <- getME(fit, "y"); mu <- fitted(fit)
  stopifnot(isTRUE(all.equal(as.double(out$residuals$response), as.double(y - mu), tolerance = 1e-12)))
  for (f in names(cf)) {                       # coef = fixef + ranef (0 for columns without a random effect)
    C <- as.matrix(cf[[f]]); R <- as.matrix(re[[f]])
    Ex <- matrix(fe, nrow(C), length(fe), byrow = TRUE, dimnames = list(NULL, names(fe)))
    Ex[, colnames(R)] <- Ex[, colnames(R)] + R
    stopifnot(max(abs(C - Ex)) < 1e-10)
  }
  if (!cs$glmm) {
    stopifnot(isTRUE(all.equal(as.double(out$residuals$scaled), as.double((y - mu) / sigma(fit)), tolerance = 1e-12)))
  }
  out$simulate <- list(
    nsim = NSIM, seed = SEED, rows = arr(seq_len(NSIM_ROWS)),
    new_re = sim_summary(fit, FALSE, id == "cbpp"),
    conditional = sim_summary(fit, TRUE, id == "cbpp"))
  list(out = out, fit = fit)
}

res <- lapply(names(CASES), function(id) run_case(id, CASES[[id]]))
names(res) <- names(CASES)
cases <- lapply(res, `[[`, "out")

## ---------------------------------------------------------------- extra checks / facts recorded in the note

fc <- res$cbpp$fit
y_cb <- cbpp$incidence / cbpp$size
stopifnot(max(abs(cases$cbpp$residuals$response - (y_cb - fitted(fc)))) < 1e-14)   # proportion scale
mu_cb <- fitted(fc)
stopifnot(max(abs(cases$cbpp$residuals$pearson - (y_cb - mu_cb) / sqrt(mu_cb * (1 - mu_cb) / cbpp$size))) < 1e-10)
fg <- res$grouse$fit
mu_g <- fitted(fg)
stopifnot(max(abs(cases$grouse$residuals$pearson - (grouseticks$TICKS - mu_g) / sqrt(mu_g))) < 1e-10)
fs <- res$sleep$fit
## lmer's pearson residuals are NOT divided by sigma (they are the (prior-)weighted response residuals)
stopifnot(max(abs(cases$sleep$residuals$pearson - cases$sleep$residuals$response)) < 1e-12)
stopifnot(max(abs(cases$sleep$residuals$deviance - cases$sleep$residuals$response)) < 1e-12)

NOTE <- list(
  general = paste(
    "All per-row arrays are aligned with the data rows in the CSV's row order (= lme4's data set row order).",
    "Each case's data were read from the CSV and checked value by value against lme4's data set (same level",
    "orders, recorded in factor_levels). Matrices are {rownames, colnames, values: list of rows}."),
  fixef = "fixef(fit): names and values",
  logLik = "as.numeric(logLik(fit)) (REML criterion's logLik for sleep, which is REML); logLik_df = attr(logLik(fit), 'df')",
  theta = "getME(fit, 'theta')",
  coef = paste("coef(fit)[[factor]]: a table levels x coefficients (levels = rownames, columns = colnames, values",
               "row-major); lme4's coef = fixef + ranef per level (a column without a random effect is the fixef)"),
  ranef = "ranef(fit)[[factor]] (conditional modes), same layout as coef",
  fitted = paste("fitted(fit): conditional mean on the response scale (cbpp: the PROPORTION incidence / size;",
                 "grouse: the expected count; sleep: X beta + Z b)"),
  predict_population = "predict(fit, re.form = NA, type = 'response') (population level, random effects 0)",
  predict_link = "predict(fit) (link scale, conditional); predict_link_population: predict(fit, re.form = NA)",
  residuals_glmm = paste(
    "cbpp, grouse: residuals(fit, type = 'response') = y - fitted, where for the binomial cbind() response y is",
    "the PROPORTION incidence / size (lme4's binomial response residuals are on the proportion scale);",
    "type = 'pearson': (y - mu) / sqrt(V(mu) / w) with w the prior weights (cbpp: size, so (y - mu) /",
    "sqrt(mu (1 - mu) / size); grouse: (y - mu) / sqrt(mu)); type = 'deviance': sign(y - mu) sqrt(unit deviance",
    "* w); type = 'working': (y - mu) / mu.eta(eta); default = residuals(fit) = the deviance residuals for a glmer."),
  residuals_lmm = paste(
    "sleep: residuals(fit) (= type 'response', y - fitted); residuals(fit, type = 'pearson') which for an lmer",
    "is NOT divided by sigma: it equals the response residuals (sqrt(prior weights) * (y - mu), weights 1 here);",
    "residuals(fit, scaled = TRUE) = response residuals / sigma(fit); type = 'deviance' also equals the response",
    "residuals."),
  sigma = "sigma(fit) (1 for binomial and poisson glmer)",
  nobs = "nobs(fit)",
  ngrps = "ngrps(fit): number of levels per grouping factor",
  vcov = paste("as.matrix(vcov(fit)). For a glmer lme4 1.1-31 defaults to use.hessian = TRUE: the fixef block",
               "of the inverse of the finite-difference Hessian of the deviance in (theta, beta) that the",
               "optimizer left in fit@optinfo$derivs; vcov_use_hessian_false: vcov(fit, use.hessian = FALSE),",
               "the inverse of the PIRLS (Fisher) X'WX-based Schur complement at the fixed theta."),
  df_residual = "df.residual(fit) = nobs - logLik_df (number of fixef + theta parameters, + 1 for sigma in an lmer)",
  prior_weights = "weights(fit) (cbpp: size; grouse: 1)",
  simulate = paste0(
    "Rough Monte-Carlo reference only. For rows 1..", NSIM_ROWS, ": mean and var (R's var, denominator nsim - 1) over ",
    "the ", NSIM, " columns of simulate(fit, nsim = ", NSIM, ", seed = ", SEED, ") (new_re: default use.u = FALSE /",
    " re.form = NA, new random effects drawn for each simulation) and of simulate(fit, nsim = ", NSIM,
    ", seed = ", SEED, ", use.u = TRUE) (conditional: random effects fixed at their conditional modes). cbpp:",
    " each simulation is a 2-column matrix (successes, failures); the numbers are for the successes (COUNTS of",
    " incidence, not proportions; successes + failures = size checked). Monte-Carlo standard error of a mean is",
    " about sqrt(var / ", NSIM, ")."),
  lme4_convergence_messages = "unlist(fit@optinfo$conv$lme4$messages) (empty: no convergence warning)",
  vcov_use_hessian_false_warnings = paste(
    "warnings from vcov(fit, use.hessian = FALSE) (lme4 warns when the two vcov's differ by > 1e-4; they do",
    "for both GLMMs: the RX-based one treats theta as known and uses the PIRLS weights, the Hessian-based",
    "default is the fixef block of the inverse Hessian in (theta, beta))")
)

out <- list(versions = versions, note = NOTE, cases = cases)
file <- file.path(OUT, "verbs_references.json")
write_json_file(out, file)
back <- fromJSON(file, simplifyVector = TRUE)
for (id in names(cases)) {
  stopifnot(back$cases[[id]]$logLik == cases[[id]]$logLik,
            all(back$cases[[id]]$fitted == cases[[id]]$fitted),
            all(back$cases[[id]]$residuals$pearson == cases[[id]]$residuals$pearson))
}

for (id in names(cases)) {
  cc <- cases[[id]]
  cat(sprintf("%-7s logLik %.10f  sigma %.8f  nobs %d  df.resid %g  fixef %s\n", id, cc$logLik, cc$sigma, cc$nobs,
              cc$df_residual, paste(sprintf("%.6f", cc$fixef$values), collapse = " ")))
  for (ty in names(cc$residuals)) cat(sprintf("        resid %-9s %s\n", ty,
                                              paste(sprintf("%.8f", head(cc$residuals[[ty]], 3)), collapse = " ")))
  cat(sprintf("        sim new_re mean %s | var %s\n", paste(sprintf("%.4f", cc$simulate$new_re$mean), collapse = " "),
              paste(sprintf("%.4f", cc$simulate$new_re$var), collapse = " ")))
  cat(sprintf("        sim cond   mean %s | var %s\n", paste(sprintf("%.4f", cc$simulate$conditional$mean), collapse = " "),
              paste(sprintf("%.4f", cc$simulate$conditional$var), collapse = " ")))
  cat(sprintf("        fitted     %s\n", paste(sprintf("%.6f", head(cc$fitted, 5)), collapse = " ")))
  if (length(cc$lme4_convergence_messages)) cat("        CONVERGENCE:", cc$lme4_convergence_messages, "\n")
}
cat("wrote", file, "\n")
