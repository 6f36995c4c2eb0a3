## Kenward-Roger reference values on UNBALANCED linear mixed models (lmerTest through pbkrtest), where KR's adjusted
## covariance of beta (pbkrtest::vcovAdj) differs from the unadjusted vcov(fit). The balanced designs in
## satterthwaite_references.json (sleepstudy, ham) have vcovAdj == vcov and F.scaling == 1, so they cannot test the
## adjustment itself; these cases can.
##
## Run from the repository root:   Rscript tests/data/r/kr_references.R   (a few seconds)
## Writes tests/data/kr_references.json ({"versions": {...}, "note": ..., "cases": {case_id: {...}}}),
## tests/data/sleep_unbalanced.csv and tests/data/ham_unbalanced.csv; prints a summary table.
##
## Data (built from the package data frames; the fits use these R data frames, the CSVs hold them exactly):
##   sleep_unbalanced.csv: d <- sleepstudy[-seq(1, nrow(sleepstudy), by = 7), ]   (lme4::sleepstudy, 154 of 180 rows)
##                         d$grp <- factor(ifelse(d$Subject %in% levels(sleepstudy$Subject)[1:9], "a", "b"),
##                                         levels = c("a", "b"))
##                         columns Reaction, Days, Subject, grp (row.names = FALSE)
##   ham_unbalanced.csv:   h <- ham[-seq(3, nrow(ham), by = 5), ]   (lmerTest::ham, 518 of 648 rows)
##                         columns Informed.liking, Product, Information, Consumer (row.names = FALSE)
##
## Cases (all lmerTest::lmer, REML = TRUE, default control = lmerControl()):
##   sleep_unbal:       lmer(Reaction ~ Days + (Days | Subject), data = d)
##   sleep_unbal_diag:  lmer(Reaction ~ Days + (Days || Subject), data = d)
##   ham_unbal:         lmer(Informed.liking ~ Product * Information + (1 | Consumer) + (1 | Consumer:Product), data = h)
##   sleep_unbal_group: lmer(Reaction ~ Days * grp + (Days | Subject), data = d)
## For each fit:
##   lme4: REMLcrit, logLik, fixef, vcov (by rows), theta (getME(fit, "theta")), sigma; colnames(model.matrix(fit));
##   summary(fit, ddf = "Kenward-Roger")$coefficients; anova(fit, type = 3, ddf = "Kenward-Roger");
##   show_tests(anova(fit, type = 3)) (L of each type III term) and pbkrtest::KRmodcomp(fit, L) for each: its `test`
##   table rows Ftest and FtestU (stat, ndf, ddf, F.scaling, p.value) and `aux`; as.matrix(pbkrtest::vcovAdj(fit));
##   summary(fit, ddf = "Satterthwaite")$coefficients (for comparison).
##   sleep_unbal only: attributes "W" and "P" of pbkrtest::vcovAdj(fit) (and "condi"), with the order of the variance
##   parameters (pbkrtest's get_SigmaG: per random-effect term of VarCorr(fit), the lower triangle of its covariance
##   matrix column by column, then sigma^2).
##
## Numbers are written as the shortest decimal that round-trips (helpers in tests/data/r/reference_helpers.R).
## Tested with R 4.2.2, lme4 1.1-31, lmerTest 3.1-3, pbkrtest 0.5.2, Matrix 1.5-3, jsonlite 1.8.4
## (Debian bookworm packages).

t_start <- proc.time()[["elapsed"]]

suppressPackageStartupMessages({
  library(lme4)
  library(lmerTest)
  library(pbkrtest)
  library(jsonlite)
})

OUT <- file.path("tests", "data")
stopifnot(dir.exists(OUT))

versions <- list(
  R = R.version.string,
  lme4 = as.character(packageVersion("lme4")),
  lmerTest = as.character(packageVersion("lmerTest")),
  pbkrtest = as.character(packageVersion("pbkrtest")),
  Matrix = as.character(packageVersion("Matrix")),
  jsonlite = as.character(packageVersion("jsonlite"))
)

## ---------------------------------------------------------------- helpers

source(file.path("tests", "data", "r", "reference_helpers.R"))   # capture, arr, by_rows, write_json_file, write_csv_exact

## ---------------------------------------------------------------- data

data("sleepstudy", package = "lme4"); data("ham", package = "lmerTest")

SLEEP_PREP <- c("d <- sleepstudy[-seq(1, nrow(sleepstudy), by = 7), ]",
                "d$grp <- factor(ifelse(d$Subject %in% levels(sleepstudy$Subject)[1:9], \"a\", \"b\"), levels = c(\"a\", \"b\"))")
HAM_PREP <- "h <- ham[-seq(3, nrow(ham), by = 5), ]"
eval(parse(text = SLEEP_PREP)); eval(parse(text = HAM_PREP))
d <- d[, c("Reaction", "Days", "Subject", "grp")]
h <- h[, c("Informed.liking", "Product", "Information", "Consumer")]
stopifnot(nrow(d) == 154, nrow(h) == 518,
          identical(levels(d$Subject), levels(sleepstudy$Subject)), all(table(d$Subject) > 0),
          identical(levels(h$Product), sort(levels(h$Product))),
          identical(levels(h$Information), sort(levels(h$Information))),
          identical(levels(d$grp), sort(levels(d$grp))),
          identical(levels(d$Subject), sort(levels(d$Subject))),   # 308..372: numeric order = string order
          all(table(h$Consumer) > 0), all(table(h$Product) > 0), all(table(h$Information) > 0),
          all(table(interaction(h$Consumer, h$Product, drop = TRUE)) > 0))
write_csv_exact(d, file.path(OUT, "sleep_unbalanced.csv"))
write_csv_exact(h, file.path(OUT, "ham_unbalanced.csv"))

## ---------------------------------------------------------------- tables

coef_table <- function(ct) list(
  names = arr(rownames(ct)), estimate = arr(ct[, "Estimate"]), se = arr(ct[, "Std. Error"]),
  df = arr(ct[, "df"]), t = arr(ct[, "t value"]), p = arr(ct[, "Pr(>|t|)"]))

anova_table <- function(a) list(
  terms = arr(rownames(a)), sum_sq = arr(as.double(a[["Sum Sq"]])),
  mean_sq = arr(as.double(a[["Mean Sq"]])), num_df = arr(as.double(a[["NumDF"]])),
  den_df = arr(as.double(a[["DenDF"]])), F = arr(as.double(a[["F value"]])),
  p = arr(as.double(a[["Pr(>F)"]])))

kr_row <- function(tt, r) list(stat = as.double(tt[r, "stat"]), ndf = as.double(tt[r, "ndf"]),
                               ddf = as.double(tt[r, "ddf"]), F.scaling = as.double(tt[r, "F.scaling"]),
                               p.value = as.double(tt[r, "p.value"]))

## pbkrtest's variance parameters (get_SigmaG): per VarCorr term, lower triangle column-major, then sigma^2
kr_varpar <- function(fit) {
  vc <- VarCorr(fit)
  nm <- character(0); val <- numeric(0); grp <- character(0)
  for (g in names(vc)) {
    M <- vc[[g]]; cn <- colnames(M)
    idx <- which(lower.tri(M, diag = TRUE), arr.ind = TRUE)   # column-major order
    for (k in seq_len(nrow(idx))) {
      i <- idx[k, 1]; j <- idx[k, 2]
      nm <- c(nm, if (i == j) sprintf("%s: var(%s)", g, cn[i]) else sprintf("%s: cov(%s, %s)", g, cn[j], cn[i]))
      val <- c(val, M[i, j]); grp <- c(grp, g)
    }
  }
  list(names = c(nm, "sigma^2"), values = c(val, sigma(fit)^2), groups = c(grp, "Residual"))
}

run_case <- function(id, formula, data_name, data, data_file, data_prep, data_note, factor_levels, internals = FALSE) {
  call <- paste0("lmerTest::lmer(", formula, ", data = ", data_name, ")")
  env <- list2env(setNames(list(data), data_name), parent = globalenv())
  capF <- capture(eval(parse(text = call), env)); fit <- capF$value
  stopifnot(inherits(fit, "lmerModLmerTest"), isREML(fit))

  V <- as.matrix(vcov(fit)); se0 <- sqrt(diag(V))
  th <- getME(fit, "theta")
  fitb <- list(
    REMLcrit = as.numeric(REMLcrit(fit)),
    logLik = as.numeric(logLik(fit)),
    fixef = list(names = arr(names(fixef(fit))), estimate = arr(fixef(fit)), se = arr(se0)),
    vcov = by_rows(V),
    theta = list(names = arr(names(th)), values = arr(th)),
    sigma = sigma(fit),
    nobs = nobs(fit),
    ngrps = as.list(ngrps(fit)),
    isSingular = isSingular(fit),
    optimizer = fit@optinfo$optimizer,
    convergence_messages = arr(fit@optinfo$conv$lme4$messages))

  capK <- capture(summary(fit, ddf = "Kenward-Roger")$coefficients)
  capKA <- capture(anova(fit, type = 3, ddf = "Kenward-Roger"))
  capS <- capture(summary(fit, ddf = "Satterthwaite")$coefficients)
  capV <- capture(pbkrtest::vcovAdj(fit)); VA <- capV$value
  Vadj <- as.matrix(VA)
  kt <- coef_table(capK$value)
  stopifnot(isTRUE(all.equal(unname(sqrt(diag(Vadj))), as.numeric(unclass(kt$se)), tolerance = 1e-12)),
            identical(as.vector(kt$names), names(fixef(fit))))
  rel_se <- as.numeric(unclass(kt$se)) / unname(se0) - 1

  ## type III contrasts and KRmodcomp per term
  L_list <- show_tests(anova(fit, type = 3))
  at <- anova_table(capKA$value)
  stopifnot(identical(names(L_list), as.vector(at$terms)))
  sig <- sigma(fit)
  krm <- list(); Fsc <- numeric(0)
  for (term in names(L_list)) {
    L <- L_list[[term]]
    capM <- capture(pbkrtest::KRmodcomp(fit, L)); km <- capM$value
    tt <- km$test
    k <- match(term, as.vector(at$terms))
    aF <- as.numeric(unclass(at$F))[k]; aMS <- as.numeric(unclass(at$mean_sq))[k]
    aDDF <- as.numeric(unclass(at$den_df))[k]; aNDF <- as.numeric(unclass(at$num_df))[k]
    ## lmerTest's KR anova row = KRmodcomp: F = Ftest stat (= F.scaling * FtestU stat), Mean Sq = FtestU * sigma^2
    stopifnot(isTRUE(all.equal(tt["Ftest", "stat"], aF, tolerance = 1e-12)),
              isTRUE(all.equal(tt["Ftest", "stat"], tt["Ftest", "F.scaling"] * tt["FtestU", "stat"], tolerance = 1e-12)),
              isTRUE(all.equal(tt["FtestU", "stat"] * sig^2, aMS, tolerance = 1e-12)),
              isTRUE(all.equal(tt["Ftest", "ddf"], aDDF, tolerance = 1e-12)),
              tt["Ftest", "ndf"] == aNDF)
    Fsc <- c(Fsc, tt["Ftest", "F.scaling"])
    krm[[term]] <- list(
      L = list(rows = arr(rownames(L)), columns = arr(colnames(L)), matrix = by_rows(L)),
      Ftest = kr_row(tt, "Ftest"), FtestU = kr_row(tt, "FtestU"),
      aux = list(names = arr(names(km$aux)), values = arr(as.double(km$aux))),
      warnings = arr(c(capM$warnings, capM$messages)))
  }
  at$F_scaling <- arr(Fsc)

  out <- list(
    case_id = id, dataset = data_name, data_file = data_file, data_file_root = "tests/data",
    data_prep = arr(data_prep), data_note = data_note, formula = formula, REML = TRUE,
    factor_levels = factor_levels,
    r_call = call,
    r_calls_tests = list(
      kenward_roger = c("summary(fit, ddf = \"Kenward-Roger\")$coefficients",
                        "anova(fit, type = 3, ddf = \"Kenward-Roger\")",
                        "L <- show_tests(anova(fit, type = 3)); pbkrtest::KRmodcomp(fit, L[[term]])",
                        "as.matrix(pbkrtest::vcovAdj(fit))"),
      satterthwaite = "summary(fit, ddf = \"Satterthwaite\")$coefficients"),
    model_matrix_columns = arr(colnames(model.matrix(fit))),
    fit = fitb,
    fit_warnings = arr(c(capF$warnings, capF$messages)),
    kenward_roger = list(
      coefficients = kt,
      se_unadjusted = arr(se0),
      se_rel_diff = arr(rel_se),
      max_abs_rel_diff_se = max(abs(rel_se)),
      anova_type3 = at,
      krmodcomp = krm,
      vcov_adjusted = by_rows(Vadj),
      warnings = arr(c(capK$warnings, capKA$warnings, capV$warnings))),
    satterthwaite = list(coefficients = coef_table(capS$value), warnings = arr(capS$warnings)))

  if (internals) {
    vp <- kr_varpar(fit)
    SG <- pbkrtest:::.get_SigmaG(fit)
    stopifnot(SG$n.ggamma == length(vp$values))
    ## my ordering of the variance parameters reproduces pbkrtest's Sigma = sum_i ggamma_i G_i, and that Sigma is
    ## lme4's marginal covariance sigma^2 (I + Z Lambda Lambda' Z')
    S_mine <- Reduce(`+`, Map(function(g, G) g * G, vp$values, SG$G))
    ZL <- crossprod(getME(fit, "Lambdat") %*% getME(fit, "Zt"))
    S_lme4 <- sig^2 * (ZL + Diagonal(nrow(ZL)))
    stopifnot(max(abs(as.matrix(S_mine - SG$Sigma))) < 1e-9 * max(abs(as.matrix(SG$Sigma))),
              max(abs(as.matrix(S_mine - S_lme4))) < 1e-9 * max(abs(as.matrix(S_lme4))))
    W <- as.matrix(attr(VA, "W")); P <- lapply(attr(VA, "P"), as.matrix)
    stopifnot(nrow(W) == length(vp$values), length(P) == length(vp$values))
    out$kr_internals <- list(
      note = paste("Attributes of pbkrtest::vcovAdj(fit) (vcovAdj_internal). Variance parameters ggamma in",
                   "get_SigmaG order: per random-effect term of VarCorr(fit) the lower triangle of its covariance",
                   "matrix column by column, then sigma^2; Sigma = sum_i ggamma_i G_i (G_i = Z_term (I_levels %x%",
                   "E_i) Z_term', E_i the symmetric 0/1 indicator of entry i; G_last = I_n). With Phi = vcov(fit):",
                   "P_i = -X' Sigma^-1 G_i Sigma^-1 X; Q_ij = X' Sigma^-1 G_i Sigma^-1 G_j Sigma^-1 X;",
                   "IE2_ij = tr(Sigma^-1 G_i Sigma^-1 G_j) - 2 tr(Phi Q_ij) + tr(Phi P_i Phi P_j); W = 2 IE2^-1",
                   "(the asymptotic covariance of ggamma); U = sum_ij W_ij (Q_ij - P_i Phi P_j);",
                   "vcovAdj = Phi + 2 Phi U Phi. condi = min |eigenvalue of IE2| (solve() is used when > 1e-10).",
                   "P and W rows/columns follow varpar_names (P_i indexed over model_matrix_columns)."),
      varpar_names = arr(vp$names),
      varpar_groups = arr(vp$groups),
      varpar_values = arr(vp$values),
      W = by_rows(W),
      P = lapply(P, by_rows),
      condi = as.double(attr(VA, "condi")))
  }
  out
}

## ---------------------------------------------------------------- cases

SLEEP_NOTE <- paste("lme4::sleepstudy with every 7th row dropped (rows 1, 8, 15, ..., 176 of 180): 154 rows, 18 Subjects",
                    "with 8 or 9 observations each; Subject levels 308..372 (numeric order = string order); grp = \"a\" for",
                    "the first 9 levels of levels(sleepstudy$Subject) (308..335), \"b\" otherwise (levels a, b)")
HAM_NOTE <- paste("lmerTest::ham with every 5th row dropped starting from row 3 (rows 3, 8, ..., 648): 518 rows;",
                  "Informed.liking integer; Product (\"1\"..\"4\"), Information (\"1\", \"2\") factors in sorted label",
                  "order; Consumer 81 levels \"1\"..\"84\" in NUMERIC order (27, 28, 72 absent; not string order);",
                  "every Consumer:Product pair keeps at least one row")
lv <- function(df, cols) setNames(lapply(cols, function(cc) levels(df[[cc]])), cols)

cases <- list()
cases$sleep_unbal <- run_case("sleep_unbal", "Reaction ~ Days + (Days | Subject)", "d", d, "sleep_unbalanced.csv",
                              SLEEP_PREP, SLEEP_NOTE, lv(d, "Subject"), internals = TRUE)
cases$sleep_unbal_diag <- run_case("sleep_unbal_diag", "Reaction ~ Days + (Days || Subject)", "d", d,
                                   "sleep_unbalanced.csv", SLEEP_PREP, SLEEP_NOTE, lv(d, "Subject"))
cases$ham_unbal <- run_case("ham_unbal",
                            "Informed.liking ~ Product * Information + (1 | Consumer) + (1 | Consumer:Product)",
                            "h", h, "ham_unbalanced.csv", HAM_PREP, HAM_NOTE,
                            lv(h, c("Product", "Information", "Consumer")))
cases$sleep_unbal_group <- run_case("sleep_unbal_group", "Reaction ~ Days * grp + (Days | Subject)", "d", d,
                                    "sleep_unbalanced.csv", SLEEP_PREP, SLEEP_NOTE, lv(d, c("Subject", "grp")))

## the point of these cases: KR's adjusted se differs from the unadjusted one
for (id in c("sleep_unbal", "ham_unbal", "sleep_unbal_group"))
  stopifnot(cases[[id]]$kenward_roger$max_abs_rel_diff_se > 1e-6)

res <- list(versions = versions,
            note = paste("Kenward-Roger on unbalanced designs (lmerTest 3.1-3 through pbkrtest 0.5.2), all REML with",
                         "default lmerControl(). Each case: `fit` (lme4: REMLcrit, logLik, fixef with unadjusted se,",
                         "vcov by rows, theta, sigma), `model_matrix_columns`, `kenward_roger` {coefficients{names,",
                         "estimate, se, df, t, p} (se = sqrt(diag(vcov_adjusted))), se_unadjusted, se_rel_diff (KR se /",
                         "unadjusted se - 1), anova_type3{terms, sum_sq, mean_sq, num_df, den_df, F, p, F_scaling},",
                         "krmodcomp{term: {L (show_tests(anova(fit, type = 3))), Ftest, FtestU {stat, ndf, ddf,",
                         "F.scaling, p.value}, aux}}, vcov_adjusted (pbkrtest::vcovAdj, by rows)}, `satterthwaite`",
                         "{coefficients}. lmerTest's KR type III F = Ftest stat = F.scaling * FtestU stat; its Sum Sq /",
                         "Mean Sq come from FtestU (Mean Sq = FtestU stat * sigma^2). sleep_unbal also has `kr_internals`",
                         "(vcovAdj's W and P attributes with the variance-parameter order). KR is analytic in pbkrtest",
                         "(no numerical derivatives), so only the optimiser's stopping point limits agreement."),
            cases = cases)
path <- file.path(OUT, "kr_references.json")
write_json_file(res, path)
back <- fromJSON(path, simplifyVector = FALSE)
for (id in names(cases)) stopifnot(
  identical(unlist(back$cases[[id]]$kenward_roger$coefficients$df), as.vector(cases[[id]]$kenward_roger$coefficients$df)),
  identical(unlist(back$cases[[id]]$kenward_roger$vcov_adjusted), unlist(lapply(cases[[id]]$kenward_roger$vcov_adjusted, as.vector))))

## ---------------------------------------------------------------- summary

for (id in names(cases)) {
  o <- cases[[id]]; k <- o$kenward_roger
  cat(sprintf("\n%s: %s   REMLcrit %.8f  sigma %.6f  max |KR se / se - 1| %.3e\n", id, o$formula, o$fit$REMLcrit,
              o$fit$sigma, k$max_abs_rel_diff_se))
  ct <- k$coefficients
  for (i in seq_along(ct$names))
    cat(sprintf("  %-26s est %11.5f  se %9.6f  KR se %9.6f  rel %10.3e  KR df %10.5f  Satt df %10.5f\n",
                ct$names[i], ct$estimate[i], k$se_unadjusted[i], ct$se[i], k$se_rel_diff[i], ct$df[i],
                o$satterthwaite$coefficients$df[i]))
  at <- k$anova_type3
  for (i in seq_along(at$terms))
    cat(sprintf("  type III %-20s NumDF %d  KR DenDF %10.5f  F %10.6f  F.scaling %.8f  p %.4e\n", at$terms[i],
                as.integer(at$num_df[i]), at$den_df[i], at$F[i], at$F_scaling[i], at$p[i]))
  w <- c(o$fit_warnings, k$warnings, o$satterthwaite$warnings)
  if (length(w)) cat("  warnings:", paste(w, collapse = " | "), "\n")
}
cat(sprintf("\nwrote %s, %s, %s in %.1f s\n", path, file.path(OUT, "sleep_unbalanced.csv"),
            file.path(OUT, "ham_unbalanced.csv"), proc.time()[["elapsed"]] - t_start))
