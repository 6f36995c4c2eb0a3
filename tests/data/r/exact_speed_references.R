## Laplace reference fits for issue 20 ("exact fits at glmmTMB's speed"): three crossed GLMMs fitted
## by lme4 with a tight inner tolerance, by lme4 with its defaults and by glmmTMB, with their fit
## times, and the Laplace approximation computed here by hand, evaluated at each engine's estimates
## and maximised: the target for bayesmix's exact Laplace fits.
##
## Run from the repository root:   Rscript tests/data/r/exact_speed_references.R
## Writes tests/data/verbagg_laplace.json, tests/data/grouseticks_laplace.json,
## tests/data/insteval_binomial_laplace.json and tests/data/verbagg.csv; prints a summary table.
## InstEval itself is not written (the CSV would be several MB); benchmarks/exact_vs_r.py exports
## it from R when it runs.
##
## Tested with R 4.2.2, lme4 1.1-31, glmmTMB 1.1.5, TMB 1.9.2, Matrix 1.5-3, jsonlite 1.8.4
## (Debian bookworm packages); the versions actually used are written into every JSON (`versions`).
##
## Exact calls (`dat` is the data frame built by the case's `data_prep`, also written into the JSON):
##   lme4_tight:   glmer(FORMULA, family = FAMILY, data = dat,
##                       control = glmerControl(optimizer = "bobyqa", tolPwrss = 1e-10))
##   lme4_default: glmer(FORMULA, family = FAMILY, data = dat)
##   glmmTMB:      glmmTMB(FORMULA, family = FAMILY, data = dat)
## with
##   verbagg:           r2 ~ Anger + Gender + btype + situ + (1 | id) + (1 | item), binomial
##                      (dat <- lme4::VerbAgg; r2 is a factor with levels N, Y, so "success" = Y)
##   grouseticks:       TICKS ~ YEAR + HEIGHT_cs + (1 | BROOD) + (1 | INDEX) + (1 | LOCATION), poisson
##                      (dat <- lme4::grouseticks; HEIGHT_cs <- as.numeric(scale(HEIGHT)))
##   insteval_binomial: y4 ~ 1 + (1 | s) + (1 | d) + (1 | dept:service), binomial
##                      (dat <- lme4::InstEval; y4 <- as.numeric(y >= 4))
##
## Why a computation by hand (`exact_laplace`): a Newton solve for the conditional modes with a
## sparse Cholesky factor, then log p(y | b) - b'D^-1 b / 2 - log|D| / 2 - log|Z'WZ + D^-1| / 2,
## evaluated at lme4_tight's, lme4_default's and glmmTMB's estimates and, where cheap enough,
## maximised. lme4's reported logLik is not always the Laplace value at its own estimates (it comes
## out lower; the cause was not pinned down here), and its estimates can stop short of the optimum
## even with the tight tolerance, while glmmTMB's logLik equals the value computed by hand at its
## estimates. So a fit at the optimum can differ from lme4_tight by more than from glmmTMB; compare
## with exact_laplace.maximised, or with exact_laplace.at_* for how far each engine is from it.

suppressPackageStartupMessages({
  library(lme4)
  library(glmmTMB)
  library(jsonlite)
})

OUT <- file.path("tests", "data")
stopifnot(dir.exists(OUT))

versions <- list(
  R = R.version.string,
  lme4 = as.character(packageVersion("lme4")),
  glmmTMB = as.character(packageVersion("glmmTMB")),
  TMB = as.character(packageVersion("TMB")),
  Matrix = as.character(packageVersion("Matrix")),
  jsonlite = as.character(packageVersion("jsonlite")),
  source = "Debian bookworm packages (r-base-core, r-cran-*)",
  cores = parallel::detectCores()
)

TIGHT <- 'glmerControl(optimizer = "bobyqa", tolPwrss = 1e-10)'

## ---------------------------------------------------------------- helpers

arr <- function(x) { if (is.null(x)) x <- character(0); I(unname(as.vector(x))) }  # a JSON array even of length 1
mat <- function(x) { x <- as.matrix(x); dimnames(x) <- NULL; x }

capture <- function(expr) {
  w <- character(); msg <- character()
  val <- withCallingHandlers(expr,
    warning = function(c) { w <<- c(w, conditionMessage(c)); invokeRestart("muffleWarning") },
    message = function(c) { msg <<- c(msg, conditionMessage(c)); invokeRestart("muffleMessage") })
  list(value = val, warnings = w, messages = msg)
}

## The first fit is kept (its warnings included); the further n - 1 only time the same call.
fit_timed <- function(call_text, env, n) {
  el <- numeric(n); cpu <- numeric(n); first <- NULL
  for (i in seq_len(n)) {
    st <- system.time(cap <- capture(eval(parse(text = call_text), envir = env)))
    if (i == 1) first <- cap
    el[i] <- st[["elapsed"]]; cpu[i] <- st[["user.self"]] + st[["sys.self"]]
  }
  list(cap = first, time = list(n_reps = n, elapsed_s = arr(el), cpu_s = arr(cpu),
                                median_elapsed_s = median(el), median_cpu_s = median(cpu),
                                note = "in-process fit only (data already loaded, packages attached)"))
}

fmt_num <- function(x) {   # shortest of %.15g / %.16g / %.17g that round-trips
  s <- sprintf("%.15g", x)
  for (dg in c(16, 17)) {
    bad <- is.finite(x) & suppressWarnings(as.numeric(s)) != x
    s[bad] <- sprintf(paste0("%.", dg, "g"), x[bad])
  }
  s[is.na(x)] <- "NA"
  s
}

## jsonlite 1.8.4 writes at most 15 significant digits even with digits = NA, which does not
## round-trip every double; so every double is pre-formatted (shortest exact decimal, non-finite ->
## null) and handed to toJSON verbatim.
json_num <- function(x) { s <- fmt_num(x); s[!is.finite(x)] <- "null"; s }
prep_json <- function(x) {
  if (is.list(x) && !is.data.frame(x)) {
    if (length(x) == 0) return(x)
    nm <- names(x); y <- lapply(x, prep_json); names(y) <- nm; return(y)
  }
  if (is.double(x)) {
    if (is.matrix(x)) {
      rows <- vapply(seq_len(nrow(x)), function(i) paste0("[", paste(json_num(x[i, ]), collapse = ","), "]"), "")
      return(structure(paste0("[", paste(rows, collapse = ","), "]"), class = "json"))
    }
    s <- json_num(as.vector(x))
    if (inherits(x, "AsIs") || length(x) != 1) return(structure(paste0("[", paste(s, collapse = ","), "]"), class = "json"))
    return(structure(s, class = "json"))
  }
  x
}
write_json_exact <- function(x, path) {
  js <- toJSON(prep_json(x), digits = NA, auto_unbox = TRUE, null = "null", na = "null", pretty = TRUE,
               json_verbatim = TRUE)
  writeLines(js, path)
}

## Random-effect SDs by grouping factor (all three models have scalar intercept terms only).
sd_list <- function(vc) {
  lapply(names(vc), function(g) {
    S <- vc[[g]]
    list(group = g, terms = arr(colnames(S)), sd = arr(attr(S, "stddev")), var = arr(diag(as.matrix(S))))
  })
}

## lme4's theta split by grouping factor, in the order of getME(m, "cnms") (theta's own order).
theta_by_group <- function(m) {
  th <- getME(m, "theta"); cnms <- getME(m, "cnms")
  out <- list(); k <- 0
  for (i in seq_along(cnms)) {
    p <- length(cnms[[i]]); len <- p * (p + 1) / 2
    out[[i]] <- list(group = names(cnms)[i], terms = arr(cnms[[i]]), values = arr(th[k + seq_len(len)]))
    k <- k + len
  }
  out
}

lme4_block <- function(fit, call_text) {
  m <- fit$cap$value
  fe <- fixef(m)
  capV <- capture(as.matrix(vcov(m))); V <- capV$value
  ll <- logLik(m)
  th <- getME(m, "theta")
  list(
    r_call = call_text,
    fixef = list(names = arr(names(fe)), estimate = arr(fe), se = arr(sqrt(diag(V))), vcov = mat(V),
                 vcov_warnings = arr(capV$warnings),
                 se_note = "lme4's default vcov (use.hessian = TRUE: finite-difference Hessian of the deviance)"),
    theta = list(names = arr(names(th)), values = arr(th)),
    theta_by_group = theta_by_group(m),
    varcorr = sd_list(VarCorr(m)),
    logLik = as.numeric(ll), logLik_df = attr(ll, "df"),
    deviance = deviance(m), minus2logLik = -2 * as.numeric(ll),
    deviance_note = "deviance(glmerMod) as lme4 defines it; minus2logLik = -2 * logLik (Laplace)",
    AIC = AIC(m), BIC = BIC(m), nobs = nobs(m), ngrps = as.list(ngrps(m)),
    isSingular = isSingular(m),
    optimizer = m@optinfo$optimizer, optimizer_conv = m@optinfo$conv$opt, feval = m@optinfo$feval,
    conv_messages = arr(as.character(m@optinfo$conv$lme4$messages)),
    fit_warnings = arr(fit$cap$warnings), fit_messages = arr(fit$cap$messages),
    fit_time = fit$time
  )
}

tmb_block <- function(fit, call_text) {
  m <- fit$cap$value
  fe <- fixef(m)$cond; V <- as.matrix(vcov(m)$cond)
  ll <- logLik(m)
  vc <- VarCorr(m)$cond
  sds <- unlist(lapply(vc, function(S) attr(S, "stddev")))
  list(
    r_call = call_text,
    fixef = list(names = arr(names(fe)), estimate = arr(fe), se = arr(sqrt(diag(V))), vcov = mat(V)),
    varcorr = sd_list(vc),
    theta_equivalent = list(groups = arr(names(vc)), values = arr(sds),
      note = paste("lme4's theta for a scalar random intercept in a family without a scale parameter is",
                   "the SD itself, so glmmTMB's SDs are listed here in glmmTMB's group order")),
    logLik = as.numeric(ll), logLik_df = attr(ll, "df"),
    deviance = -2 * as.numeric(ll), minus2logLik = -2 * as.numeric(ll),
    AIC = AIC(m), BIC = BIC(m), nobs = nobs(m),
    par = list(names = arr(names(m$fit$par)), values = arr(m$fit$par)),
    objective = m$fit$objective, convergence = m$fit$convergence,
    optimizer_message = m$fit$message, pdHess = m$sdr$pdHess,
    fit_warnings = arr(fit$cap$warnings), fit_messages = arr(fit$cap$messages),
    fit_time = fit$time
  )
}

write_csv_exact <- function(df, path) {
  out <- df
  for (nm in names(out)) {
    if (is.factor(out[[nm]])) out[[nm]] <- as.character(out[[nm]])
    else if (is.double(out[[nm]])) out[[nm]] <- fmt_num(out[[nm]])
  }
  q <- which(vapply(df, function(v) is.factor(v) || is.character(v), TRUE))
  write.csv(out, path, row.names = FALSE, quote = q)
  back <- read.csv(path, colClasses = ifelse(seq_along(df) %in% q, "character", NA))
  for (nm in names(df)) {
    a <- df[[nm]]; b <- back[[nm]]
    if (is.factor(a)) a <- as.character(a)
    stopifnot(identical(as.vector(a), as.vector(b)) || isTRUE(all(a == b)))
  }
  invisible(path)
}

## ---------------------------------------------------------------- the Laplace approximation by hand

## log of the Laplace approximation to the marginal likelihood for scalar random intercepts with
## variances sd_levels^2 (one per column of Z); bernoulli (0/1 y) or poisson.
exact_laplace <- function(y, X, Z, beta, sd_levels, family, tol = 1e-10, maxit = 100) {
  Dinv <- 1 / sd_levels^2; eta0 <- drop(X %*% beta); b <- numeric(ncol(Z)); L <- NULL
  state <- function(b) {
    eta <- eta0 + drop(Z %*% b)
    mu <- if (family == "poisson") exp(eta) else plogis(eta)
    w <- if (family == "poisson") mu else mu * (1 - mu)
    H <- forceSymmetric(crossprod(Diagonal(x = sqrt(w)) %*% Z) + Diagonal(x = Dinv))
    list(eta = eta, mu = mu, H = H)
  }
  for (it in seq_len(maxit)) {
    st <- state(b)
    ## the sparsity pattern never changes, so the symbolic factorisation is done once
    L <- if (is.null(L)) Cholesky(st$H, LDL = FALSE, super = FALSE) else update(L, st$H)
    step <- drop(solve(L, drop(crossprod(Z, y - st$mu)) - b * Dinv, system = "A"))
    b <- b + step
    if (max(abs(step)) < tol) break
  }
  st <- state(b)
  cond <- if (family == "poisson") sum(dpois(y, exp(st$eta), log = TRUE))
          else sum(dbinom(y, 1, plogis(st$eta), log = TRUE))
  val <- cond - 0.5 * sum(b^2 * Dinv) + 0.5 * sum(log(Dinv)) -
    0.5 * as.numeric(determinant(st$H, logarithm = TRUE)$modulus)
  list(logLik = val, newton_iterations = it, last_step = max(abs(step)))
}

## The exact_laplace block: evaluations at each engine's estimates and, if `maximise`, the maximum
## over (log SDs, beta) by BFGS from glmmTMB's estimates with central-difference gradients (optim's
## default forward differences are too coarse for the digits wanted here).
exact_block <- function(m, family, blocks, maximise) {
  X <- getME(m, "X"); Z <- t(getME(m, "Zt")); y <- m@resp$y
  fl <- getME(m, "flist"); grp <- names(getME(m, "cnms"))
  stopifnot(all(lengths(getME(m, "cnms")) == 1))
  nlev <- vapply(grp, function(g) nlevels(fl[[g]]), 1)
  at <- function(beta, sds) exact_laplace(y, X, Z, beta, rep(sds[grp], nlev), family)
  sds_of <- function(blk) setNames(vapply(blk$varcorr, function(v) v$sd[[1]], 1),
                                   vapply(blk$varcorr, function(v) v$group, ""))
  out <- list(method = paste(
    "Newton iterations for the conditional modes (stop when no mode moves by 1e-10), sparse Cholesky",
    "(Matrix), logLik = log p(y | b) - b'D^-1 b / 2 - log|D| / 2 - log|Z'WZ + D^-1| / 2 with the",
    "binomial / poisson normalising constants, X and Z from lme4_tight's model object"))
  for (nm in names(blocks)) {
    blk <- blocks[[nm]]
    if (is.null(blk$fixef)) next
    r <- at(blk$fixef$estimate, sds_of(blk))
    out[[paste0("at_", nm)]] <- list(logLik = r$logLik, reported_minus_exact = blk$logLik - r$logLik,
                                     newton_iterations = r$newton_iterations)
  }
  if (maximise && !is.null(blocks$glmmTMB$fixef)) {
    k <- length(grp); start <- c(log(sds_of(blocks$glmmTMB)[grp]), blocks$glmmTMB$fixef$estimate)
    f <- function(p) -at(p[-(1:k)], setNames(exp(p[1:k]), grp))$logLik
    g <- function(p) vapply(seq_along(p), function(i) {
      h <- 1e-4; e <- replace(numeric(length(p)), i, h); (f(p + e) - f(p - e)) / (2 * h) }, 1)
    o <- optim(start, f, g, method = "BFGS", control = list(reltol = 1e-15, maxit = 1000))
    out$maximised <- list(
      logLik = -o$value, convergence = o$convergence, counts = as.list(o$counts),
      start = "glmmTMB's estimates",
      fixef = list(names = arr(colnames(X)), estimate = arr(o$par[-(1:k)])),
      sd = list(groups = arr(grp), values = arr(exp(o$par[1:k]))),
      note = "estimates good to about 1e-6 relative (BFGS on numerical gradients); the logLik to about 1e-9")
  }
  out
}

summary_rows <- list()

run_case <- function(case_id, dataset, data_prep, formula_str, family, link, factor_cols, n_time,
                     data_file = NULL, data_note = NULL, notes = NULL, tmb = TRUE, extra_top = list(),
                     maximise = TRUE) {
  env <- new.env(parent = globalenv())
  eval(parse(text = data_prep), envir = env)
  d <- get("dat", envir = env)
  fl <- list(); for (cc in factor_cols) fl[[cc]] <- arr(levels(d[[cc]]))
  call_tight <- sprintf("glmer(%s, family = %s, data = dat, control = %s)", formula_str, family, TIGHT)
  call_default <- sprintf("glmer(%s, family = %s, data = dat)", formula_str, family)
  call_tmb <- sprintf("glmmTMB(%s, family = %s, data = dat)", formula_str, family)

  cat(sprintf("%s: lme4_tight ...\n", case_id))
  fit_t <- fit_timed(call_tight, env, n_time)
  tight <- lme4_block(fit_t, call_tight)
  tight$control <- TIGHT
  cat(sprintf("%s: lme4_default ...\n", case_id))
  dflt <- lme4_block(fit_timed(call_default, env, 1), call_default)
  case <- list(
    case_id = case_id, dataset = dataset, data_file = data_file, data_file_root = "tests/data",
    data_prep = data_prep, data_note = data_note, factor_levels = fl,
    formula = formula_str, family = family, link = link, method = "Laplace", nAGQ = 1L,
    versions = versions, notes = notes,
    laplace_note = paste(
      "lme4_tight (", TIGHT, "), lme4_default (glmer's defaults: tolPwrss = 1e-7, bobyqa then",
      "Nelder_Mead) and glmmTMB are three Laplace fits. exact_laplace evaluates the Laplace",
      "approximation by hand at each one's estimates (at_*; reported_minus_exact = the engine's logLik",
      "minus that value) and, where present, maximises it (maximised): compare a Laplace fit with",
      "exact_laplace.maximised, not with lme4's logLik, which can fall below the Laplace value at lme4's",
      "own estimates."),
    lme4_tight = tight,
    lme4_default = dflt)
  for (nm in names(extra_top)) case[[nm]] <- extra_top[[nm]]
  if (tmb) {
    cat(sprintf("%s: glmmTMB ...\n", case_id))
    case$glmmTMB <- tryCatch(tmb_block(fit_timed(call_tmb, env, n_time), call_tmb),
                             error = function(e) list(r_call = call_tmb, error = conditionMessage(e)))
  }
  cat(sprintf("%s: exact Laplace ...\n", case_id))
  case$exact_laplace <- exact_block(fit_t$cap$value, family,
                                    list(lme4_tight = tight, lme4_default = dflt, glmmTMB = case$glmmTMB), maximise)
  write_json_exact(case, file.path(OUT, paste0(case_id, ".json")))
  g <- case$glmmTMB
  summary_rows[[case_id]] <<- data.frame(
    case = case_id,
    logLik_tight = sprintf("%.10f", tight$logLik),
    logLik_default = sprintf("%.10f", dflt$logLik),
    logLik_glmmTMB = if (is.null(g$logLik)) "-" else sprintf("%.10f", g$logLik),
    t_tight = tight$fit_time$median_elapsed_s,
    t_default = dflt$fit_time$median_elapsed_s,
    t_glmmTMB = if (is.null(g$fit_time)) NA else g$fit_time$median_elapsed_s,
    exact_at_tight = sprintf("%.10f", case$exact_laplace$at_lme4_tight$logLik),
    exact_at_glmmTMB = if (is.null(g$logLik)) "-" else sprintf("%.10f", case$exact_laplace$at_glmmTMB$logLik),
    exact_max = if (is.null(case$exact_laplace$maximised)) "-" else sprintf("%.10f", case$exact_laplace$maximised$logLik))
  invisible(case)
}

## ---------------------------------------------------------------- VerbAgg

data(VerbAgg, package = "lme4")
va <- VerbAgg
stopifnot(identical(levels(va$r2), c("N", "Y")))
verbagg_csv <- data.frame(r2 = va$r2, r2_yes = as.integer(va$r2 == "Y"), Anger = va$Anger,
                          Gender = va$Gender, btype = va$btype, situ = va$situ, id = va$id,
                          item = va$item)
write_csv_exact(verbagg_csv, file.path(OUT, "verbagg.csv"))

run_case("verbagg_laplace", "lme4::VerbAgg",
         'data(VerbAgg, package = "lme4")\ndat <- VerbAgg',
         "r2 ~ Anger + Gender + btype + situ + (1 | id) + (1 | item)", "binomial", "logit",
         c("r2", "Gender", "btype", "situ", "id", "item"), n_time = 3,
         data_file = "verbagg.csv",
         data_note = paste(
           "verbagg.csv holds lme4::VerbAgg's columns r2, Anger, Gender, btype, situ, id, item (factors as",
           "strings) plus r2_yes = as.integer(r2 == \"Y\"). glmer's binomial response r2 is a factor with",
           "levels N, Y: the first level is failure, so the model is for P(r2 == \"Y\") and",
           "`r2_yes ~ Anger + Gender + btype + situ + (1 | id) + (1 | item)` on the 0/1 column is the same model.",
           "Treatment contrasts against the first level in factor_levels (Gender F, btype curse, situ other)."))

## ---------------------------------------------------------------- grouseticks

run_case("grouseticks_laplace", "lme4::grouseticks",
         'data(grouseticks, package = "lme4")\ndat <- grouseticks\ndat$HEIGHT_cs <- as.numeric(scale(dat$HEIGHT))',
         "TICKS ~ YEAR + HEIGHT_cs + (1 | BROOD) + (1 | INDEX) + (1 | LOCATION)", "poisson", "log",
         c("YEAR", "BROOD", "INDEX", "LOCATION"), n_time = 3,
         data_file = "grouseticks.csv",
         data_note = paste(
           "grouseticks.csv is lme4::grouseticks (written by tests/data/r/issue18_references.R). It has no",
           "HEIGHT_cs column: HEIGHT_cs = (HEIGHT - mean(HEIGHT)) / sd(HEIGHT), sd with n - 1 (R's scale());",
           "see scale_center / scale_scale. YEAR is a factor (levels 95, 96, 97; baseline 95); the csv's",
           "cHEIGHT column is HEIGHT centred only and is not used here."),
         notes = paste(
           "lme4's ?grouseticks example fits TICKS ~ YEAR + HEIGHT + (1|BROOD) + (1|INDEX) + (1|LOCATION) with",
           "HEIGHT on its raw scale (metres, about 400-530), which makes glmer warn about predictor scales;",
           "this case standardises HEIGHT as the usual worked examples of this model do (the same model,",
           "reparameterised: only the intercept and the HEIGHT coefficient change)."),
         extra_top = list(scale_center = mean(grouseticks$HEIGHT), scale_scale = sd(grouseticks$HEIGHT)))

## ---------------------------------------------------------------- InstEval, binomial

run_case("insteval_binomial_laplace", "lme4::InstEval",
         'data(InstEval, package = "lme4")\ndat <- InstEval\ndat$y4 <- as.numeric(dat$y >= 4)',
         "y4 ~ 1 + (1 | s) + (1 | d) + (1 | dept:service)", "binomial", "logit",
         c("service", "dept"), n_time = 1,
         data_note = paste(
           "Not written to tests/data (73,421 rows); benchmarks/exact_vs_r.py exports lme4::InstEval from R",
           "with y4 = as.numeric(y >= 4) (ratings 4 and 5 are successes). s (2,972 students) and d",
           "(1,128 lecturers) are crossed; dept:service has 28 levels."),
         notes = paste("exact_laplace is evaluated at the engines' estimates but not maximised here: each",
                       "evaluation takes seconds and a numerical-gradient search needs hundreds."),
         maximise = FALSE)

## ---------------------------------------------------------------- summary

cat("\n")
print(do.call(rbind, summary_rows), row.names = FALSE)
