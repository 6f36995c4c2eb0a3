## Reference values for denominator degrees of freedom in linear mixed models: Satterthwaite t tests and type III
## F tests (lmerTest), and Kenward-Roger (lmerTest through pbkrtest) for the REML fits.
##
## Run from the repository root:   Rscript tests/data/r/satterthwaite_references.R   (a few seconds)
## Writes tests/data/satterthwaite_references.json ({"versions": {...}, "cases": {case_id: {...}}}) and
## tests/data/ham.csv (lmerTest::ham); prints a summary table.
## Reads, and checks value by value against R's own data (does not rewrite): tests/data/cake.csv (lme4::cake,
## written by issue18_references.R), bayesmix/datasets/sleepstudy.csv and bayesmix/datasets/Penicillin.csv (the
## bundled datasets, identical to /work/shared/reference/data/*.csv). The fits use R's package data frames.
##
## Cases (all lmerTest::lmer, default control = lmerControl(), REML = TRUE unless stated):
##   sleep_reml:  lmer(Reaction ~ Days + (Days | Subject), data = sleepstudy)
##   sleep_ml:    lmer(Reaction ~ Days + (Days | Subject), data = sleepstudy, REML = FALSE)
##   cake:        lmer(angle ~ recipe * temp + (1 | recipe:replicate), data = cake)          (temp numeric)
##   ham:         lmer(Informed.liking ~ Product * Information + (1 | Consumer) + (1 | Consumer:Product), data = ham)
##   penicillin:  lmer(diameter ~ 1 + (1 | plate) + (1 | sample), data = Penicillin)
## For each fit:
##   summary(fit, ddf = "Satterthwaite")$coefficients, anova(fit, type = 3, ddf = "Satterthwaite"),
##   show_tests(anova(fit, type = 3)) (the contrast matrix L of each type III hypothesis),
##   and, REML only, summary(fit, ddf = "Kenward-Roger")$coefficients, anova(fit, type = 3, ddf = "Kenward-Roger"),
##   pbkrtest::vcovAdj(fit) (the adjusted covariance of beta that KR's se uses);
##   lme4's logLik, REMLcrit (REML) / deviance (ML), fixef, vcov, theta, sigma; colnames(model.matrix(fit));
##   lmerTest's internals (fit@vcov_varpar, fit@Jac_list: varpar = c(theta, sigma), their asymptotic covariance
##   2 * solve(Hessian of the deviance) and the Jacobian of vcov(beta) w.r.t. varpar, both by numDeriv);
##   and a `tight` block: the same model refitted with
##   control = lmerControl(optimizer = "nloptwrap", optCtrl = list(xtol_abs = 1e-14, ftol_abs = 1e-15,
##   xtol_rel = 0, ftol_rel = 0, maxeval = 1e5)) and its Satterthwaite tables, to show how much the default
##   optimiser's stopping point moves the numbers.
##
## Repeat runs reproduce the file exactly except penicillin's last digits: plain lme4::lmer on Penicillin returns one of
## two theta vectors 1.5e-10 apart from one R process to the next (same 41 evaluations; reference BLAS, one thread).
## Numbers are written as the shortest decimal that round-trips (helpers copied from sequential_references.R).
## Tested with R 4.2.2, lme4 1.1-31, lmerTest 3.1-3, pbkrtest 0.5.2, numDeriv 2016.8-1.1, Matrix 1.5-3,
## jsonlite 1.8.4 (Debian bookworm packages).

suppressPackageStartupMessages({
  library(lme4)
  library(lmerTest)
  library(pbkrtest)
  library(jsonlite)
})

OUT <- file.path("tests", "data")
BUNDLED <- file.path("bayesmix", "datasets")
stopifnot(dir.exists(OUT), file.exists(file.path(OUT, "cake.csv")),
          file.exists(file.path(BUNDLED, "sleepstudy.csv")), file.exists(file.path(BUNDLED, "Penicillin.csv")))

versions <- list(
  R = R.version.string,
  lme4 = as.character(packageVersion("lme4")),
  lmerTest = as.character(packageVersion("lmerTest")),
  pbkrtest = as.character(packageVersion("pbkrtest")),
  numDeriv = as.character(packageVersion("numDeriv")),
  Matrix = as.character(packageVersion("Matrix")),
  jsonlite = as.character(packageVersion("jsonlite"))
)

## ---------------------------------------------------------------- helpers (from sequential_references.R)

capture <- function(expr) {
  w <- character(); msg <- character()
  val <- withCallingHandlers(expr,
    warning = function(c) { w <<- c(w, conditionMessage(c)); invokeRestart("muffleWarning") },
    message = function(c) { msg <<- c(msg, conditionMessage(c)); invokeRestart("muffleMessage") })
  list(value = val, warnings = w, messages = msg)
}
arr <- function(x) { if (is.null(x)) x <- character(0); I(unname(as.vector(x))) }  # always a JSON array
rows <- function(M) { M <- as.matrix(M); lapply(seq_len(nrow(M)), function(i) arr(M[i, ])) }  # matrix by rows

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

write_csv_exact <- function(df, path) {   # as issue18_references.R
  out <- df
  for (nm in names(out)) {
    if (is.factor(out[[nm]])) out[[nm]] <- as.character(out[[nm]])
    else if (is.double(out[[nm]])) out[[nm]] <- fmt_num(out[[nm]])
  }
  q <- which(vapply(df, function(v) is.factor(v) || is.character(v), TRUE))
  write.csv(out, path, row.names = FALSE, quote = q)
  check_csv(df, path)
}
## the CSV holds exactly R's data (factors as their labels, numbers equal)
check_csv <- function(df, path) {
  back <- read.csv(path, colClasses = "character")
  stopifnot(nrow(back) == nrow(df), all(names(df) %in% names(back)))
  for (nm in names(df)) {
    a <- df[[nm]]; b <- back[[nm]]
    ok <- if (is.factor(a) || is.character(a)) identical(as.character(a), b) else identical(as.numeric(a), as.numeric(b))
    if (!ok) stop(path, ": column ", nm, " differs from R's data")
  }
  invisible(TRUE)
}

## ---------------------------------------------------------------- data

data("sleepstudy", package = "lme4"); data("cake", package = "lme4"); data("Penicillin", package = "lme4")
data("ham", package = "lmerTest")
check_csv(sleepstudy, file.path(BUNDLED, "sleepstudy.csv"))
check_csv(Penicillin, file.path(BUNDLED, "Penicillin.csv"))
check_csv(cake, file.path(OUT, "cake.csv"))
write_csv_exact(ham, file.path(OUT, "ham.csv"))

## ---------------------------------------------------------------- tables

coef_table <- function(ct) list(
  names = arr(rownames(ct)), estimate = arr(ct[, "Estimate"]), se = arr(ct[, "Std. Error"]),
  df = arr(ct[, "df"]), t = arr(ct[, "t value"]), p = arr(ct[, "Pr(>|t|)"]))

anova_table <- function(a, sigma) {
  out <- list(terms = arr(rownames(a)), sum_sq = arr(as.double(a[["Sum Sq"]])),
              mean_sq = arr(as.double(a[["Mean Sq"]])), num_df = arr(as.double(a[["NumDF"]])),
              den_df = arr(as.double(a[["DenDF"]])), F = arr(as.double(a[["F value"]])),
              p = arr(as.double(a[["Pr(>F)"]])))
  ## Mean Sq = F_unscaled * sigma^2 in lmerTest; F = F_unscaled * F_scaling (1 except KR's multi-df tests)
  out$F_scaling <- arr(as.double(a[["F value"]]) / (as.double(a[["Mean Sq"]]) / sigma^2))
  out
}

contrasts_type3 <- function(fit) {
  a <- anova(fit, type = 3)
  if (nrow(a) == 0) return(setNames(list(), character(0)))   # intercept-only: no hypotheses, a JSON {}
  L <- show_tests(a)
  lapply(L, function(M) list(rows = arr(rownames(M)), columns = arr(colnames(M)), matrix = rows(M)))
}

TIGHT <- lmerControl(optimizer = "nloptwrap", optCtrl = list(xtol_abs = 1e-14, ftol_abs = 1e-15, xtol_rel = 0,
                                                           ftol_rel = 0, maxeval = 1e5))
TIGHT_TEXT <- paste0("control = lmerControl(optimizer = \"nloptwrap\", optCtrl = list(xtol_abs = 1e-14, ",
                     "ftol_abs = 1e-15, xtol_rel = 0, ftol_rel = 0, maxeval = 1e5))")

fit_block <- function(fit) {
  reml <- isREML(fit)
  th <- getME(fit, "theta")
  V <- as.matrix(vcov(fit))
  conv <- fit@optinfo$conv$lme4$messages
  list(
    logLik = as.numeric(logLik(fit)),
    REMLcrit = if (reml) as.numeric(REMLcrit(fit)) else NULL,
    deviance = if (!reml) as.numeric(deviance(fit)) else NULL,
    fixef = list(names = arr(names(fixef(fit))), estimate = arr(fixef(fit)), se = arr(sqrt(diag(V)))),
    vcov = rows(V),
    theta = list(names = arr(names(th)), values = arr(th)),
    sigma = sigma(fit),
    nobs = nobs(fit),
    ngrps = as.list(ngrps(fit)),
    isSingular = isSingular(fit),
    optimizer = fit@optinfo$optimizer,
    convergence_messages = arr(conv))
}

run_case <- function(id, formula, data_name, data, reml, dataset, data_file, data_file_root, data_note,
                     factor_levels) {
  fstr <- formula
  call <- paste0("lmerTest::lmer(", fstr, ", data = ", data_name, if (!reml) ", REML = FALSE", ")")
  env <- list2env(setNames(list(data), data_name), parent = globalenv())
  capF <- capture(eval(parse(text = call), env)); fit <- capF$value
  stopifnot(inherits(fit, "lmerModLmerTest"))
  capT <- capture(lmerTest::lmer(as.formula(fstr), data = data, REML = reml, control = TIGHT))
  tfit <- capT$value

  capS <- capture(summary(fit, ddf = "Satterthwaite")$coefficients)
  capA <- capture(anova(fit, type = 3, ddf = "Satterthwaite"))
  sig <- sigma(fit)
  satt <- list(coefficients = coef_table(capS$value), anova_type3 = anova_table(capA$value, sig),
               warnings = arr(c(capS$warnings, capA$warnings)))
  kr <- NULL
  if (reml) {
    capK <- capture(summary(fit, ddf = "Kenward-Roger")$coefficients)
    capKA <- capture(anova(fit, type = 3, ddf = "Kenward-Roger"))
    Vadj <- as.matrix(pbkrtest::vcovAdj(fit))
    kt <- coef_table(capK$value)
    stopifnot(isTRUE(all.equal(unname(sqrt(diag(Vadj))), as.vector(kt$se), tolerance = 1e-12)))
    kr <- list(coefficients = kt, anova_type3 = anova_table(capKA$value, sig), vcov_adjusted = rows(Vadj),
               warnings = arr(c(capK$warnings, capKA$warnings)))
  }
  vp_names <- c(names(getME(fit, "theta")), "sigma")
  internals <- list(
    note = paste("lmerTest's own pieces (slots of the lmerModLmerTest fit): varpar = c(theta, sigma);",
                 "vcov_varpar = 2 * solve(numDeriv::hessian of the (REML or ML) deviance as a function of varpar);",
                 "jacobian[[k]] = d vcov(beta) / d varpar[k] (numDeriv::jacobian); the Satterthwaite df of a",
                 "contrast l is 2 (l' V l)^2 / (g' vcov_varpar g), g_k = l' jacobian[[k]] l"),
    varpar_names = arr(vp_names),
    varpar = arr(c(getME(fit, "theta"), sig)),
    vcov_varpar = rows(fit@vcov_varpar),
    jacobian = lapply(fit@Jac_list, rows))

  capTS <- capture(summary(tfit, ddf = "Satterthwaite")$coefficients)
  capTA <- capture(anova(tfit, type = 3, ddf = "Satterthwaite"))
  tight <- list(
    r_call = paste0("lmerTest::lmer(", fstr, ", data = ", data_name, if (!reml) ", REML = FALSE", ", ",
                    TIGHT_TEXT, ")"),
    fit = fit_block(tfit),
    satterthwaite = list(coefficients = coef_table(capTS$value), anova_type3 = anova_table(capTA$value, sigma(tfit))),
    logLik_minus_default = as.numeric(logLik(tfit)) - as.numeric(logLik(fit)),
    max_rel_diff_df_vs_default = max(abs(capTS$value[, "df"] / capS$value[, "df"] - 1)),
    warnings = arr(capT$warnings))
  if (reml) {
    capTK <- capture(summary(tfit, ddf = "Kenward-Roger")$coefficients)
    capTKA <- capture(anova(tfit, type = 3, ddf = "Kenward-Roger"))
    tight$kenward_roger <- list(coefficients = coef_table(capTK$value),
                                anova_type3 = anova_table(capTKA$value, sigma(tfit)))
  }

  list(
    case_id = id, dataset = dataset, data_file = data_file, data_file_root = data_file_root, data_note = data_note,
    formula = fstr, REML = reml, factor_levels = factor_levels,
    r_call = call,
    r_calls_tests = list(
      satterthwaite = c("summary(fit, ddf = \"Satterthwaite\")$coefficients",
                        "anova(fit, type = 3, ddf = \"Satterthwaite\")"),
      kenward_roger = if (reml) c("summary(fit, ddf = \"Kenward-Roger\")$coefficients",
                                  "anova(fit, type = 3, ddf = \"Kenward-Roger\")", "pbkrtest::vcovAdj(fit)") else NULL,
      contrasts = "show_tests(anova(fit, type = 3))"),
    model_matrix_columns = arr(colnames(model.matrix(fit))),
    fit = fit_block(fit),
    fit_warnings = arr(c(capF$warnings, capF$messages)),
    satterthwaite = satt,
    kenward_roger = kr,
    type3_contrasts = contrasts_type3(fit),
    lmerTest_internals = internals,
    tight = tight)
}

## ---------------------------------------------------------------- cases

lv <- function(d, cols) setNames(lapply(cols, function(cc) levels(d[[cc]])), cols)
SS_NOTE <- paste("lme4::sleepstudy (180 rows): bundled dataset (bayesmix.load_dataset(\"sleepstudy\"),",
                 "bayesmix/datasets/sleepstudy.csv = /work/shared/reference/data/sleepstudy.csv); Subject a factor",
                 "with levels 308..372 in numeric order")
cases <- list()
cases$sleep_reml <- run_case("sleep_reml", "Reaction ~ Days + (Days | Subject)", "sleepstudy", sleepstudy, TRUE,
                             "sleepstudy", "sleepstudy.csv", "bayesmix/datasets", SS_NOTE, lv(sleepstudy, "Subject"))
cases$sleep_ml <- run_case("sleep_ml", "Reaction ~ Days + (Days | Subject)", "sleepstudy", sleepstudy, FALSE,
                           "sleepstudy", "sleepstudy.csv", "bayesmix/datasets", SS_NOTE, lv(sleepstudy, "Subject"))
cases$cake <- run_case("cake", "angle ~ recipe * temp + (1 | recipe:replicate)", "cake", cake, TRUE,
                       "cake", "cake.csv", "tests/data",
                       paste("lme4::cake (270 rows, tests/data/cake.csv): temp is the NUMERIC temperature (175..225);",
                             "the ordered factor `temperature` is not used; recipe A, B, C (baseline A); the grouping",
                             "factor is the interaction recipe:replicate (45 levels)"),
                       lv(cake, c("recipe", "replicate")))
cases$ham <- run_case("ham", "Informed.liking ~ Product * Information + (1 | Consumer) + (1 | Consumer:Product)",
                      "ham", ham, TRUE, "ham", "ham.csv", "tests/data",
                      paste("lmerTest::ham (648 rows, tests/data/ham.csv written by this script): Consumer (81 levels",
                            "\"1\"..\"81\" in NUMERIC order, not string order), Product (1..4), Information (1, 2),",
                            "Gender (1, 2) factors; Informed.liking and Age integers; Consumer:Product has 324 levels"),
                      lv(ham, c("Consumer", "Product", "Information", "Gender")))
cases$penicillin <- run_case("penicillin", "diameter ~ 1 + (1 | plate) + (1 | sample)", "Penicillin", Penicillin, TRUE,
                             "Penicillin", "Penicillin.csv", "bayesmix/datasets",
                             paste("lme4::Penicillin (144 rows): bundled dataset (bayesmix.load_dataset(\"Penicillin\")),",
                                   "crossed plate (24 levels a..x) and sample (A..F); intercept only, so the type III",
                                   "table has no rows"),
                             lv(Penicillin, c("plate", "sample")))

## sanity checks against well-known values
stopifnot(abs(cases$sleep_reml$satterthwaite$coefficients$df[2] - 17) < 0.5,
          abs(cases$ham$satterthwaite$anova_type3$den_df[1] - 240) < 1e-3)

res <- list(versions = versions,
            note = paste("Satterthwaite and Kenward-Roger denominator df (lmerTest 3.1-3; KR through pbkrtest). Each case:",
                         "`fit` (lme4 fit: logLik, REMLcrit or deviance, fixef with se, vcov by rows, theta, sigma),",
                         "`satterthwaite` / `kenward_roger` (REML only) {coefficients{names, estimate, se, df, t, p},",
                         "anova_type3{terms, sum_sq, mean_sq, num_df, den_df, F, p, F_scaling}},",
                         "`type3_contrasts` (show_tests: the L matrix of each type III hypothesis, columns =",
                         "model_matrix_columns), `lmerTest_internals`, and `tight` (the same after a tight refit).",
                         "lmerTest's KR type III F is pbkrtest::KRmodcomp's scaled F (Ftest = F.scaling * FtestU) while",
                         "Sum Sq / Mean Sq are from the unscaled FtestU: F_scaling = F / (Mean Sq / sigma^2) records it.",
                         "Derivatives inside lmerTest are numerical (numDeriv), so df agree with an exact computation",
                         "to ~1e-6 relative at best; compare with `tight` to see the optimiser's share. Repeat runs are",
                         "not bit-identical for penicillin: plain lme4 on this machine lands on one of two optima",
                         "(theta 1.5e-10 apart, same 41 evaluations) from run to run; other cases reproduce exactly."),
            cases = cases)
js <- toJSON(prep_json(res), digits = NA, auto_unbox = TRUE, null = "null", na = "null", pretty = TRUE,
             json_verbatim = TRUE)
path <- file.path(OUT, "satterthwaite_references.json")
writeLines(js, path)
back <- fromJSON(path, simplifyVector = FALSE)
for (id in names(cases)) stopifnot(identical(unlist(back$cases[[id]]$satterthwaite$coefficients$df),
                                             as.vector(cases[[id]]$satterthwaite$coefficients$df)))

## ---------------------------------------------------------------- summary

for (id in names(cases)) {
  o <- cases[[id]]
  cat(sprintf("\n%s  (%s) logLik %.8f  tight-default logLik %.1e, max rel df diff %.1e\n", id,
              if (o$REML) "REML" else "ML", o$fit$logLik, o$tight$logLik_minus_default,
              o$tight$max_rel_diff_df_vs_default))
  ct <- o$satterthwaite$coefficients
  for (i in seq_along(ct$names))
    cat(sprintf("  %-24s est %12.6f  se %10.6f  Satt df %10.4f%s\n", ct$names[i], ct$estimate[i], ct$se[i], ct$df[i],
                if (o$REML) sprintf("  KR df %10.4f  KR se %10.6f", o$kenward_roger$coefficients$df[i],
                                    o$kenward_roger$coefficients$se[i]) else ""))
  at <- o$satterthwaite$anova_type3
  for (i in seq_along(at$terms))
    cat(sprintf("  type III %-20s F %9.5f  NumDF %d  Satt DenDF %10.4f%s\n", at$terms[i], at$F[i], as.integer(at$num_df[i]),
                at$den_df[i], if (o$REML) sprintf("  KR DenDF %10.4f  KR F %9.5f", o$kenward_roger$anova_type3$den_df[i],
                                                  o$kenward_roger$anova_type3$F[i]) else ""))
  w <- c(o$fit_warnings, o$satterthwaite$warnings, o$kenward_roger$warnings, o$tight$warnings)
  if (length(w)) cat("  warnings:", paste(w, collapse = " | "), "\n")
}
