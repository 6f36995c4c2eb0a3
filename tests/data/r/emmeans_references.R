## Reference values of estimated marginal means (emmeans package): emmeans(), pairs() / contrast() with their
## p-value adjustments, Satterthwaite and Kenward-Roger df for lmerTest fits, and link / response scales for a
## binomial glmer fit, for the Python library's tests.
##
## Run from the repository root:   Rscript tests/data/r/emmeans_references.R   (a few seconds)
## Writes tests/data/emmeans_references.json ({"versions", "note", "cases": {ham, cake, cbpp}}) and prints a summary.
##
## Data (read from the repository's CSVs, each checked value by value, with ==, against R's own data set; the fits are
## made on the CSV data with R's factor level orders):
##  - ham:  tests/data/ham.csv = lmerTest::ham (648 rows; written by satterthwaite_references.R, NOT rewritten here):
##          Consumer 81 levels "1".."84" (numeric order; 27, 28, 72 absent), Product "1".."4", Information "1","2",
##          Gender "1","2"
##  - cake: tests/data/cake.csv = lme4::cake (270 rows; written by issue18_references.R, NOT rewritten here):
##          recipe A, B, C; replicate "1".."15"; temp NUMERIC (175..225, mean 200); temperature (ordered) unused
##  - cbpp: bayesmix/datasets/cbpp.csv = lme4::cbpp (56 rows; herd "1".."15", period "1".."4")
##
## Exact calls (library(lmerTest) attached, so lmer is lmerTest::lmer and fits are lmerModLmerTest):
##  ham:  fit <- lmer(Informed.liking ~ Product * Information + (1 | Consumer) + (1 | Consumer:Product), data = ham)
##        e  <- emmeans(fit, ~ Product, lmer.df = "satterthwaite")      (averaged over Information, equal weights)
##        emmeans(fit, ~ Product | Information, lmer.df = "satterthwaite")
##        pairs(e) (adjust "tukey", the default), pairs(e, adjust = "holm"), pairs(e, adjust = "bonferroni"),
##        pairs(e, adjust = "none"); confint(pairs(e)) (tukey-adjusted intervals)
##        contrast(e, method = "trt.vs.ctrl") (default adjust "dunnettx"), contrast(e, method = "poly") (adjust none)
##        emmeans(fit, ~ Product, lmer.df = "kenward-roger")
##  cake: fit <- lmer(angle ~ recipe * temp + (1 | recipe:replicate), data = cake)
##        e  <- emmeans(fit, ~ recipe, lmer.df = "satterthwaite")       (temp at its mean, 200)
##        pairs(e) (tukey)
##        e175 <- emmeans(fit, ~ recipe, at = list(temp = 175), lmer.df = "satterthwaite"); pairs(e175) (tukey)
##  cbpp: fit <- glmer(cbind(incidence, size - incidence) ~ period + (1 | herd), family = binomial, data = cbpp,
##                     control = glmerControl(tolPwrss = 1e-10, optimizer = "bobyqa", optCtrl = list(rhoend = 1e-10)))
##        e  <- emmeans(fit, ~ period)                    (link scale, df Inf: asymptotic z)
##        er <- emmeans(fit, ~ period, type = "response") (prob, SE by the delta method, back-transformed CLs)
##        pairs(e) (tukey, log odds differences), pairs(er) (tukey, odds ratios; tests on the link scale)
## Every table is summary(<emmGrid>) as emmeans prints it (columns under emmeans's names: emmean / prob / estimate /
## odds.ratio, SE, df, lower.CL / upper.CL or asymp.LCL / asymp.UCL, t.ratio / z.ratio, p.value, null), plus the
## emmGrid's linfct (rows of the L matrix over fixef) and, for contrasts, coef() (the contrast weights on the means).
## Each fit's fixef, vcov, theta (and sigma, logLik) are recorded so the Python side can confirm its fit first.
## Cross-checks done in R (stopifnot, and recorded under each case's `checks`): estimate = L beta, SE = sqrt(diag(L V
## L')), Satterthwaite df = lmerTest::contest(fit, L, joint = FALSE)'s df, KR SE = sqrt(diag(L vcovAdj L')) and KR df =
## pbkrtest::Lb_ddf, tukey p = ptukey(sqrt(2) |t|, 4, df, lower.tail = FALSE), bonferroni p = min(1, 6 p_none),
## response-scale prob = plogis(emmean) with SE = dlogis(emmean) SE, odds ratio = exp(log-odds difference).
##
## Numbers are written as the shortest decimal that round-trips (15-17 significant digits; jsonlite 1.8.4 alone stops at
## 15 even with digits = NA); helpers copied from sequential_references.R, except that fmt_num here writes +Inf / -Inf
## as the JSON STRINGS "Inf" / "-Inf" (the asymptotic df of the glmer case) and NA / NaN as null.
##
## Tested with R 4.2.2, lme4 1.1-31, lmerTest 3.1-3, pbkrtest 0.5.2, emmeans 1.8.4-1, Matrix 1.5-3, jsonlite 1.8.4
## (Debian bookworm packages).

suppressPackageStartupMessages({
  library(lme4)
  library(lmerTest)
  library(pbkrtest)
  library(emmeans)
  library(jsonlite)
})

OUT <- file.path("tests", "data")
SHARED <- file.path("bayesmix", "datasets")
stopifnot(dir.exists(OUT), file.exists(file.path(OUT, "ham.csv")), file.exists(file.path(OUT, "cake.csv")),
          file.exists(file.path(SHARED, "cbpp.csv")))

versions <- list(
  R = R.version.string,
  lme4 = as.character(packageVersion("lme4")),
  lmerTest = as.character(packageVersion("lmerTest")),
  pbkrtest = as.character(packageVersion("pbkrtest")),
  emmeans = as.character(packageVersion("emmeans")),
  Matrix = as.character(packageVersion("Matrix")),
  jsonlite = as.character(packageVersion("jsonlite"))
)
emm_options(lmerTest.limit = 1e5, pbkrtest.limit = 1e5)   # never silently fall back to asymptotic df (648 rows anyway)

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
  s[!is.na(x) & x == Inf] <- "\"Inf\""      # (this script) infinite df as the string "Inf"
  s[!is.na(x) & x == -Inf] <- "\"-Inf\""
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

## value-by-value check of a CSV (read with the factors as character) against R's data set
chk <- function(d, ref, cols) {
  stopifnot(nrow(d) == nrow(ref))
  for (cc in cols) {
    a <- d[[cc]]; b <- ref[[cc]]
    ok <- if (is.factor(b)) identical(as.character(a), as.character(b)) else all(as.numeric(a) == as.numeric(b))
    if (!ok) stop("column ", cc, " differs from R's data")
  }
  invisible(TRUE)
}
as_factors <- function(d, ref, cols) {
  for (cc in cols) { d[[cc]] <- factor(d[[cc]], levels(ref[[cc]])); stopifnot(!anyNA(d[[cc]])) }
  d
}

## ---------------------------------------------------------------- data

data("ham", package = "lmerTest"); data("cake", package = "lme4"); data("cbpp", package = "lme4")
R_ham <- ham; R_cake <- cake; R_cbpp <- cbpp

HAM_F <- c("Consumer", "Product", "Information", "Gender")
ham <- read.csv(file.path(OUT, "ham.csv"), colClasses = setNames(rep("character", 4), HAM_F))
chk(ham, R_ham, names(R_ham))
ham <- as_factors(ham, R_ham, HAM_F)
stopifnot(nlevels(ham$Consumer) == 81, !is.unsorted(as.integer(levels(ham$Consumer))))

cake <- read.csv(file.path(OUT, "cake.csv"), colClasses = c(replicate = "character", recipe = "character",
                                                             temperature = "character"))
chk(cake, R_cake, names(R_cake))
cake <- as_factors(cake, R_cake, c("replicate", "recipe"))
cake$temperature <- factor(cake$temperature, levels(R_cake$temperature), ordered = TRUE)

cbpp <- read.csv(file.path(SHARED, "cbpp.csv"), colClasses = c(herd = "character", period = "character"))
chk(cbpp, R_cbpp, names(R_cbpp))
cbpp <- as_factors(cbpp, R_cbpp, c("herd", "period"))
cat("CSV data match lmerTest::ham, lme4::cake, lme4::cbpp value by value\n")

## ---------------------------------------------------------------- tables

## summary(<emmGrid>) (a summary_emm data frame) -> list of columns under emmeans's own names, plus its annotations
emm_table <- function(call, env, infer = NULL) {
  cap <- capture(eval(parse(text = call), env))
  g <- cap$value
  stopifnot(inherits(g, "emmGrid"))
  s <- if (is.null(infer)) summary(g) else summary(g, infer = infer)
  cols <- lapply(names(s), function(nm) { v <- s[[nm]]; if (is.factor(v)) v <- as.character(v); arr(v) })
  names(cols) <- names(s)
  a <- attributes(s)
  out <- list(r_call = call, columns = cols,
              est_name = a$estName, by_vars = arr(a$by.vars), pri_vars = arr(a$pri.vars),
              cl_names = arr(a$clNames), adjust = a$adjust, type = a$type,
              annotations = arr(a$mesg),
              linfct_columns = arr(colnames(g@linfct)), linfct = rows(g@linfct),
              messages = arr(trimws(c(cap$messages, cap$warnings))))
  cc <- suppressMessages(coef(g))   # contrast weights on the means (contrast grids only; NULL otherwise)
  if (!is.null(cc)) {
    wc <- grep("^c\\.", names(cc))
    out$contrast_coefficients <- list(means = arr(do.call(paste, c(lapply(cc[, -wc, drop = FALSE], as.character),
                                                                       sep = ","))),
                                      weights = rows(t(as.matrix(cc[, wc]))))
  }
  list(table = out, grid = g, summary = s)
}

fit_block <- function(fit) Filter(Negate(is.null), fit_block0(fit))   # drop the fields that do not apply
fit_block0 <- function(fit) {
  V <- as.matrix(vcov(fit))
  th <- getME(fit, "theta")
  lmm <- isLMM(fit)
  list(
    fixef = list(names = arr(names(fixef(fit))), estimate = arr(fixef(fit)), se = arr(sqrt(diag(V)))),
    vcov = rows(V),
    theta = list(names = arr(names(th)), values = arr(th)),
    sigma = if (lmm) sigma(fit) else NULL,
    logLik = as.numeric(logLik(fit)),
    REMLcrit = if (lmm && isREML(fit)) as.numeric(REMLcrit(fit)) else NULL,
    deviance = if (!lmm) as.numeric(deviance(fit)) else NULL,
    nobs = nobs(fit),
    ngrps = as.list(ngrps(fit)),
    model_matrix_columns = arr(colnames(model.matrix(fit))),
    convergence_messages = arr(fit@optinfo$conv$lme4$messages),
    ## GLMM: vcov(fit) (what emmeans uses) inverts lme4's finite-difference Hessian of the deviance in (theta, beta)
    ## (use.hessian = TRUE, the default); the PIRLS (Fisher) version is given for comparison
    vcov_use_hessian_false = if (!lmm) rows(as.matrix(vcov(fit, use.hessian = FALSE))) else NULL)
}

## ---------------------------------------------------------------- cross-checks (R side)

maxdiff <- function(a, b) max(abs(as.numeric(a) - as.numeric(b)))
lin_checks <- function(fit, res, est_col = NULL) {
  g <- res$grid; s <- res$summary
  L <- g@linfct
  est <- as.vector(L %*% fixef(fit))
  se <- sqrt(diag(L %*% as.matrix(vcov(fit)) %*% t(L)))
  nm <- if (is.null(est_col)) attr(s, "estName") else est_col
  c(estimate_vs_L_beta = maxdiff(s[[nm]], est), se_vs_sqrt_LVL = maxdiff(s$SE, se))
}
satt_check <- function(fit, res) {
  L <- res$grid@linfct
  ct <- lmerTest::contest(fit, L, joint = FALSE, ddf = "Satterthwaite")
  c(df_vs_lmerTest_contest = maxdiff(res$summary$df, ct$df))
}

## ---------------------------------------------------------------- ham

env <- new.env(parent = globalenv())
assign("ham", ham, env)
HAM_CALL <- "lmer(Informed.liking ~ Product * Information + (1 | Consumer) + (1 | Consumer:Product), data = ham)"
capF <- capture(eval(parse(text = HAM_CALL), env)); fit <- capF$value
stopifnot(inherits(fit, "lmerModLmerTest"))
assign("fit", fit, env)
E <- 'emmeans(fit, ~ Product, lmer.df = "satterthwaite")'
ham_t <- list(
  emmeans_product = emm_table(E, env),
  emmeans_product_by_information = emm_table('emmeans(fit, ~ Product | Information, lmer.df = "satterthwaite")', env),
  pairs_tukey = emm_table(paste0("pairs(", E, ")"), env),
  pairs_holm = emm_table(paste0("pairs(", E, ", adjust = \"holm\")"), env),
  pairs_bonferroni = emm_table(paste0("pairs(", E, ", adjust = \"bonferroni\")"), env),
  pairs_none = emm_table(paste0("pairs(", E, ", adjust = \"none\")"), env),
  trt_vs_ctrl = emm_table(paste0("contrast(", E, ", method = \"trt.vs.ctrl\")"), env),
  poly = emm_table(paste0("contrast(", E, ", method = \"poly\")"), env),
  emmeans_product_kenward_roger = emm_table('emmeans(fit, ~ Product, lmer.df = "kenward-roger")', env)
)
## confint() returns a summary_emm, not an emmGrid: the same intervals are summary(<pairs grid>, infer = c(TRUE, FALSE))
{
  tab <- emm_table(paste0("pairs(", E, ")"), env, infer = c(TRUE, FALSE))
  ci <- confint(tab$grid)
  tab$table$r_call <- paste0("confint(pairs(", E, "))")
  stopifnot(identical(ci$lower.CL, tab$summary$lower.CL), identical(ci$upper.CL, tab$summary$upper.CL),
            identical(attr(ci, "mesg"), attr(tab$summary, "mesg")))
  ham_t$pairs_tukey_confint <- tab
}
ham_checks <- list()
for (nm in names(ham_t)) ham_checks[[nm]] <- as.list(lin_checks(fit, ham_t[[nm]]))
for (nm in setdiff(names(ham_t), "emmeans_product_kenward_roger"))
  ham_checks[[nm]] <- c(ham_checks[[nm]], as.list(satt_check(fit, ham_t[[nm]])))
{
  L <- ham_t$emmeans_product_kenward_roger$grid@linfct
  VaK <- pbkrtest::vcovAdj(fit)   # keeps the attributes (P, W, ...) that Lb_ddf needs
  Va <- as.matrix(VaK)
  kr_df <- apply(L, 1, function(l) pbkrtest::Lb_ddf(matrix(l, nrow = 1), as.matrix(vcov(fit)), VaK))
  s <- ham_t$emmeans_product_kenward_roger$summary
  ham_checks$emmeans_product_kenward_roger <- list(
    estimate_vs_L_beta = maxdiff(s$emmean, L %*% fixef(fit)),
    se_vs_sqrt_L_vcovAdj_L = maxdiff(s$SE, sqrt(diag(L %*% Va %*% t(L)))),
    df_vs_pbkrtest_Lb_ddf = maxdiff(s$df, kr_df))
}
{
  pt <- ham_t$pairs_tukey$summary; pn <- ham_t$pairs_none$summary; pb <- ham_t$pairs_bonferroni$summary
  ph <- ham_t$pairs_holm$summary
  o <- order(pn$p.value); holm <- pmin(1, cummax((6:1) * pn$p.value[o]))[order(o)]
  ham_checks$p_values <- list(
    tukey_vs_ptukey = maxdiff(pt$p.value, ptukey(sqrt(2) * abs(pt$t.ratio), 4, pt$df, lower.tail = FALSE)),
    none_vs_2pt = maxdiff(pn$p.value, 2 * pt(abs(pn$t.ratio), pn$df, lower.tail = FALSE)),
    bonferroni_vs_6p = maxdiff(pb$p.value, pmin(1, 6 * pn$p.value)),
    holm_vs_stepdown = maxdiff(ph$p.value, holm))
}

ham_case <- list(
  dataset = "ham", data_file = "tests/data/ham.csv",
  data_note = paste("lmerTest::ham (648 rows): Consumer 81 levels \"1\"..\"84\" in NUMERIC order (27, 28, 72",
                    "absent), Product 1..4, Information 1, 2, Gender 1, 2 (factors, treatment contrasts, baselines 1);",
                    "Informed.liking and Age integers"),
  factor_levels = setNames(lapply(HAM_F, function(cc) arr(levels(ham[[cc]]))), HAM_F),
  r_call = paste0("lmerTest::", HAM_CALL),
  fit = fit_block(fit), fit_messages = arr(c(capF$messages, capF$warnings)),
  tables = lapply(ham_t, `[[`, "table"),
  checks = ham_checks)
ham_fit <- fit

## ---------------------------------------------------------------- cake

env <- new.env(parent = globalenv())
assign("cake", cake, env)
CAKE_CALL <- "lmer(angle ~ recipe * temp + (1 | recipe:replicate), data = cake)"
capF <- capture(eval(parse(text = CAKE_CALL), env)); fit <- capF$value
stopifnot(inherits(fit, "lmerModLmerTest"))
assign("fit", fit, env)
E <- 'emmeans(fit, ~ recipe, lmer.df = "satterthwaite")'
E175 <- 'emmeans(fit, ~ recipe, at = list(temp = 175), lmer.df = "satterthwaite")'
cake_t <- list(
  emmeans_recipe = emm_table(E, env),
  pairs_tukey = emm_table(paste0("pairs(", E, ")"), env),
  emmeans_recipe_temp175 = emm_table(E175, env),
  pairs_tukey_temp175 = emm_table(paste0("pairs(", E175, ")"), env))
cake_checks <- list()
for (nm in names(cake_t)) cake_checks[[nm]] <- c(as.list(lin_checks(fit, cake_t[[nm]])),
                                                 as.list(satt_check(fit, cake_t[[nm]])))
rg <- ref_grid(fit); rg175 <- ref_grid(fit, at = list(temp = 175))
stopifnot(rg@levels$temp == 200, rg175@levels$temp == 175)
cake_case <- list(
  dataset = "cake", data_file = "tests/data/cake.csv",
  data_note = paste("lme4::cake (270 rows): recipe A, B, C (baseline A); replicate \"1\"..\"15\"; temp NUMERIC",
                    "(175..225 by 10, mean 200: emmeans's reference grid puts temp at its mean); the ordered factor",
                    "`temperature` is not used; grouping factor recipe:replicate (45 levels)"),
  factor_levels = list(recipe = arr(levels(cake$recipe)), replicate = arr(levels(cake$replicate))),
  r_call = paste0("lmerTest::", CAKE_CALL),
  reference_grid = list(default = list(recipe = arr(rg@levels$recipe), temp = arr(as.double(rg@levels$temp))),
                        temp175 = list(recipe = arr(rg175@levels$recipe), temp = arr(as.double(rg175@levels$temp)))),
  fit = fit_block(fit), fit_messages = arr(c(capF$messages, capF$warnings)),
  tables = lapply(cake_t, `[[`, "table"),
  checks = cake_checks)

## ---------------------------------------------------------------- cbpp

env <- new.env(parent = globalenv())
assign("cbpp", cbpp, env)
CBPP_CALL <- paste0("glmer(cbind(incidence, size - incidence) ~ period + (1 | herd), family = binomial, data = cbpp, ",
                    "control = glmerControl(tolPwrss = 1e-10, optimizer = \"bobyqa\", optCtrl = list(rhoend = 1e-10)))")
capF <- capture(eval(parse(text = CBPP_CALL), env)); fit <- capF$value
assign("fit", fit, env)
cbpp_t <- list(
  emmeans_period = emm_table("emmeans(fit, ~ period)", env),
  emmeans_period_response = emm_table("emmeans(fit, ~ period, type = \"response\")", env),
  pairs_tukey = emm_table("pairs(emmeans(fit, ~ period))", env),
  pairs_tukey_response = emm_table("pairs(emmeans(fit, ~ period, type = \"response\"))", env))
cbpp_checks <- list()
for (nm in c("emmeans_period", "pairs_tukey")) cbpp_checks[[nm]] <- as.list(lin_checks(fit, cbpp_t[[nm]]))
{
  e <- cbpp_t$emmeans_period$summary; r <- cbpp_t$emmeans_period_response$summary
  p <- cbpp_t$pairs_tukey$summary; q <- cbpp_t$pairs_tukey_response$summary
  stopifnot(all(is.infinite(e$df)), all(is.infinite(r$df)), all(is.infinite(p$df)), all(is.infinite(q$df)))
  cbpp_checks$response <- list(
    prob_vs_plogis = maxdiff(r$prob, plogis(e$emmean)),
    se_vs_dlogis_se = maxdiff(r$SE, dlogis(e$emmean) * e$SE),
    lcl_vs_plogis = maxdiff(r$asymp.LCL, plogis(e$asymp.LCL)),
    ucl_vs_plogis = maxdiff(r$asymp.UCL, plogis(e$asymp.UCL)),
    lcl_vs_z = maxdiff(e$asymp.LCL, e$emmean - qnorm(0.975) * e$SE),
    odds_ratio_vs_exp = maxdiff(q$odds.ratio, exp(p$estimate)),
    odds_ratio_se_vs_delta = maxdiff(q$SE, exp(p$estimate) * p$SE),
    z_ratio_same = maxdiff(q$z.ratio, p$z.ratio),
    p_same = maxdiff(q$p.value, p$p.value),
    tukey_vs_ptukey_inf = maxdiff(p$p.value, ptukey(sqrt(2) * abs(p$z.ratio), 4, Inf, lower.tail = FALSE)))
}
cbpp_case <- list(
  dataset = "cbpp", data_file = "bayesmix/datasets/cbpp.csv",
  data_note = paste("lme4::cbpp (56 rows): herd \"1\"..\"15\", period \"1\"..\"4\" (baseline 1); response",
                    "cbind(incidence, size - incidence)"),
  factor_levels = list(herd = arr(levels(cbpp$herd)), period = arr(levels(cbpp$period))),
  r_call = CBPP_CALL,
  fit = fit_block(fit), fit_messages = arr(c(capF$messages, capF$warnings)),
  tables = lapply(cbpp_t, `[[`, "table"),
  checks = cbpp_checks)

## ---------------------------------------------------------------- checks and output

allchk <- unlist(list(ham = ham_checks, cake = cake_checks, cbpp = cbpp_checks))
print(data.frame(max_abs_diff = signif(allchk, 3)))
tol <- ifelse(grepl("df_vs", names(allchk)), 1e-6, 1e-10)   # lmerTest / pbkrtest df: same numerical derivatives
stopifnot(all(allchk <= tol))

cases <- list(ham = c(list(case_id = "ham"), ham_case), cake = c(list(case_id = "cake"), cake_case),
              cbpp = c(list(case_id = "cbpp"), cbpp_case))
res <- list(
  versions = versions,
  note = paste(
    "emmeans 1.8.4-1 on lmerTest / lme4 fits. cases{ham, cake, cbpp}: r_call, factor_levels, fit{fixef{names,",
    "estimate, se}, vcov (rows, fixef order; for cbpp lme4's default Hessian-based vcov, which emmeans uses, and",
    "vcov_use_hessian_false for comparison), theta, sigma (LMM), logLik, REMLcrit (LMM) / deviance (GLMM),",
    "model_matrix_columns},",
    "tables{<name>: {r_call, columns (summary(<emmGrid>) column by column under emmeans's own names: the grid factors",
    "as strings, then emmean / prob / estimate / odds.ratio, SE, df, lower.CL / upper.CL or asymp.LCL / asymp.UCL,",
    "null, t.ratio / z.ratio, p.value, as present), est_name, by_vars, pri_vars, cl_names, adjust, type, annotations",
    "(emmeans's printed footnotes), linfct (rows of L over linfct_columns = fixef), contrast_coefficients (contrast",
    "grids: coef(), the weights on the means, one row per contrast), messages}}, checks (max abs differences of the",
    "R-side cross-checks). Infinite df (the glmer case's asymptotic z tests and intervals) are written as the JSON",
    "STRING \"Inf\" (float(\"Inf\") in Python); there are no NA values. Satterthwaite df come from lmerTest (numerical",
    "derivatives, ~1e-6 relative accuracy at best), Kenward-Roger df and SE from pbkrtest. ham's Product means average",
    "over Information with equal weights; cake's reference grid holds temp at its mean 200 (or at 175). Tukey p-values",
    "use ptukey with the Satterthwaite df (Inf for cbpp); dunnettx is emmeans's closed-form approximation to Dunnett;",
    "poly contrasts are unadjusted. pairs_tukey_confint (ham) is confint(pairs(e)): tukey-adjusted 95% intervals."),
  cases = cases)
js <- toJSON(prep_json(res), digits = NA, auto_unbox = TRUE, null = "null", na = "null", pretty = TRUE,
             json_verbatim = TRUE)
path <- file.path(OUT, "emmeans_references.json")
writeLines(js, path)
back <- fromJSON(path, simplifyVector = FALSE)
stopifnot(identical(as.numeric(unlist(back$cases$ham$tables$emmeans_product$columns$df)),
                    as.vector(ham_t$emmeans_product$summary$df)),
          identical(unlist(back$cases$cbpp$tables$emmeans_period$columns$df), rep("Inf", 4)),
          identical(as.numeric(unlist(back$cases$cbpp$tables$emmeans_period_response$columns$prob)),
                    as.vector(cbpp_t$emmeans_period_response$summary$prob)))

## ---------------------------------------------------------------- summary

show <- function(title, s) { cat("\n", title, "\n", sep = ""); print(as.data.frame(s), digits = 10, row.names = FALSE) }
for (nm in names(ham_t)) show(paste0("ham: ", ham_t[[nm]]$table$r_call), ham_t[[nm]]$summary)
for (nm in names(cake_t)) show(paste0("cake: ", cake_t[[nm]]$table$r_call), cake_t[[nm]]$summary)
for (nm in names(cbpp_t)) show(paste0("cbpp: ", cbpp_t[[nm]]$table$r_call), cbpp_t[[nm]]$summary)
cat("\nwrote", path, "\n")
