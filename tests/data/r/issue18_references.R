## lme4 / glmmTMB reference fits for issue 18 (offsets, numeric grouping factors, nested fixed
## terms, contrasts, transformed terms, poly / splines, factor responses, badly scaled predictors,
## the bare-bar formula).
##
## Run from the repository root:   Rscript tests/data/r/issue18_references.R
## Writes tests/data/<case_id>.json (one per case), tests/data/cake.csv, tests/data/grouseticks.csv,
## tests/data/cbpp_var1.csv, and prints a summary table.  Every case is wrapped in tryCatch, so one
## failure does not stop the rest; a failed case is reported at the end and writes no JSON.
##
## Tested with R 4.2.2, lme4 1.1-31, glmmTMB 1.1.5, TMB 1.9.2, Matrix 1.5-3, nlme 3.1-162,
## jsonlite 1.8.4 (Debian bookworm packages).

suppressPackageStartupMessages({
  library(lme4)
  library(glmmTMB)
  library(jsonlite)
  library(splines)
})

OUT <- file.path("tests", "data")
stopifnot(dir.exists(OUT))
SHARED <- "/work/shared/reference/data"  # the existing reference CSVs (only used for a consistency check)

versions <- list(
  R = R.version.string,
  lme4 = as.character(packageVersion("lme4")),
  glmmTMB = as.character(packageVersion("glmmTMB")),
  TMB = as.character(packageVersion("TMB")),
  Matrix = as.character(packageVersion("Matrix")),
  nlme = as.character(packageVersion("nlme")),
  jsonlite = as.character(packageVersion("jsonlite")),
  source = "Debian bookworm packages (r-base-core, r-cran-*)"
)

TIGHT <- "glmerControl(tolPwrss = 1e-10)"

## ---------------------------------------------------------------- helpers

arr <- function(x) { if (is.null(x)) x <- character(0); I(unname(as.vector(x))) }  # always a JSON array, even of length 1
mat <- function(x) { x <- as.matrix(x); dimnames(x) <- NULL; x }
nul <- function(x) if (is.null(x) || length(x) == 0 || (length(x) == 1 && is.na(x))) NULL else x

capture <- function(expr) {
  w <- character(); msg <- character()
  val <- withCallingHandlers(expr,
    warning = function(c) { w <<- c(w, conditionMessage(c)); invokeRestart("muffleWarning") },
    message = function(c) { msg <<- c(msg, conditionMessage(c)); invokeRestart("muffleMessage") })
  list(value = val, warnings = w, messages = msg)
}

timeit <- function(call_text, env, n = 3) {
  el <- numeric(n); cpu <- numeric(n)
  for (i in seq_len(n)) {
    st <- system.time(suppressWarnings(suppressMessages(eval(parse(text = call_text), envir = env))))
    el[i] <- st[["elapsed"]]; cpu[i] <- st[["user.self"]] + st[["sys.self"]]
  }
  list(n_reps = n, elapsed_s = arr(el), cpu_s = arr(cpu), median_elapsed_s = median(el), median_cpu_s = median(cpu))
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

## jsonlite 1.8.4 writes at most 15 significant digits even with digits = NA, which does not round-trip.
## So every double is pre-formatted here (shortest exact decimal, NA/NaN/Inf -> null) and passed
## verbatim (json_verbatim = TRUE). Every (chosen, %.17g) pair is kept in NUMCHECK so that Python can
## confirm float(chosen) == float(%.17g) independently of R's own parser.
NUMCHECK <- new.env(); NUMCHECK$pairs <- character()
json_num <- function(x) {
  s <- fmt_num(x); s[!is.finite(x)] <- "null"
  ok <- is.finite(x)
  NUMCHECK$pairs <- c(NUMCHECK$pairs, paste(s[ok], sprintf("%.17g", x[ok])))
  s
}
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

write_csv_exact <- function(df, path) {
  out <- df
  for (nm in names(out)) {
    if (is.factor(out[[nm]])) out[[nm]] <- as.character(out[[nm]])
    else if (is.double(out[[nm]])) out[[nm]] <- fmt_num(out[[nm]])
  }
  ## character / factor columns quoted, numbers not (same style as the shared CSVs)
  q <- which(vapply(df, function(v) is.factor(v) || is.character(v), TRUE))
  write.csv(out, path, row.names = FALSE, quote = q)
  ## check the round trip
  back <- read.csv(path, colClasses = ifelse(seq_along(df) %in% q, "character", NA))
  for (nm in names(df)) {
    a <- df[[nm]]; b <- back[[nm]]
    if (is.factor(a)) a <- as.character(a)
    stopifnot(identical(as.vector(a), as.vector(b)) || isTRUE(all(a == b)))
  }
  invisible(path)
}

varcorr_list <- function(vc) {
  lapply(names(vc), function(g) {
    S <- vc[[g]]
    list(group = g, terms = arr(colnames(S)), sd = arr(attr(S, "stddev")), var = arr(diag(as.matrix(S))),
         corr = mat(if (is.null(attr(S, "correlation"))) diag(nrow(S)) else attr(S, "correlation")),
         cov = mat(S))
  })
}

ranef_list <- function(re_obj, df) {
  if ("component" %in% names(df)) df <- df[df$component == "cond", ]
  out <- list()
  for (g in names(re_obj)) {
    levs <- rownames(re_obj[[g]]); terms <- colnames(re_obj[[g]])
    cv <- list(); cs <- list()
    for (t in terms) {
      sub <- df[df$grpvar == g & df$term == t, ]
      idx <- match(levs, as.character(sub$grp))
      cv[[t]] <- arr(sub$condval[idx]); cs[[t]] <- arr(sub$condsd[idx])
    }
    out[[g]] <- list(levels = arr(levs), terms = arr(terms), condval = cv, condsd = cs)
  }
  out
}

lme4_block <- function(m, cap, times, glmm) {
  fe <- fixef(m)
  capV <- capture(as.matrix(vcov(m))); V <- capV$value
  fixef_b <- list(names = arr(names(fe)), estimate = arr(fe), se = arr(sqrt(diag(V))), vcov = mat(V),
                  vcov_warnings = arr(capV$warnings))
  if (glmm) {
    capV2 <- capture(as.matrix(vcov(m, use.hessian = FALSE))); V2 <- capV2$value
    fixef_b$vcov_RX_warnings <- arr(capV2$warnings)
    fixef_b$se_from_RX <- arr(sqrt(diag(V2)))
    fixef_b$se_note <- "se: lme4 default vcov (use.hessian=TRUE, finite-difference Hessian); se_from_RX: vcov(m, use.hessian=FALSE)"
  }
  vcdf <- as.data.frame(VarCorr(m))
  th <- getME(m, "theta")
  cnms <- getME(m, "cnms")
  ll <- logLik(m)
  reml <- isREML(m)
  dc <- getME(m, "devcomp")$cmp
  dc <- lapply(as.list(dc), function(v) if (is.na(v)) NULL else v)
  re <- ranef(m, condVar = TRUE)
  list(
    fixef = fixef_b,
    sigma = if (glmm) NULL else sigma(m),
    varcorr = varcorr_list(VarCorr(m)),
    varcorr_df = list(grp = arr(vcdf$grp), var1 = arr(vcdf$var1), var2 = arr(vcdf$var2),
                      vcov = arr(vcdf$vcov), sdcor = arr(vcdf$sdcor)),
    theta = list(names = arr(names(th)), values = arr(th)),
    re_terms = unname(lapply(seq_along(cnms), function(i) list(group = names(cnms)[i], terms = arr(cnms[[i]])))),
    logLik = as.numeric(ll),
    logLik_df = attr(ll, "df"),
    REMLcrit = if (reml) REMLcrit(m) else NULL,
    deviance = if (reml) deviance(m, REML = FALSE) else deviance(m),
    deviance_note = if (glmm) "lme4 deviance(glmerMod); see minus2logLik for -2*logLik (Laplace)"
                    else if (reml) "deviance(m, REML=FALSE): ML deviance evaluated at the REML estimates"
                    else "deviance(m) = -2 logLik (ML)",
    minus2logLik = -2 * as.numeric(ll),
    AIC = AIC(m), BIC = BIC(m),
    nobs = nobs(m),
    ngrps = as.list(ngrps(m)),
    isSingular = isSingular(m),
    devcomp_cmp = dc,
    optimizer = m@optinfo$optimizer,
    optimizer_conv = m@optinfo$conv$opt,
    feval = m@optinfo$feval,
    conv_messages = arr(as.character(m@optinfo$conv$lme4$messages)),
    fit_warnings = arr(cap$warnings),
    fit_messages = arr(cap$messages),
    ranef_note = "ranef(m, condVar=TRUE): conditional modes and conditional SDs (lme4: conditional on estimated beta and theta)",
    ranef = ranef_list(re, as.data.frame(re)),
    fit_time = times
  )
}

tmb_block <- function(m, cap, times, formula_str, reml, gaussian) {
  fe <- fixef(m)$cond; V <- as.matrix(vcov(m)$cond)
  ll <- logLik(m)
  re <- ranef(m, condVar = TRUE)$cond
  list(
    fixef = list(names = arr(names(fe)), estimate = arr(fe), se = arr(sqrt(diag(V))), vcov = mat(V)),
    sigma = if (gaussian) sigma(m) else NULL,
    nb_theta = NULL,
    varcorr = varcorr_list(VarCorr(m)$cond),
    logLik = as.numeric(ll), logLik_df = attr(ll, "df"),
    minus2logLik = -2 * as.numeric(ll), AIC = AIC(m), BIC = BIC(m), nobs = nobs(m),
    par = list(names = arr(names(m$fit$par)), values = arr(m$fit$par)),
    objective = m$fit$objective, convergence = m$fit$convergence,
    optimizer_message = m$fit$message, pdHess = m$sdr$pdHess,
    fit_warnings = arr(cap$warnings), fit_messages = arr(cap$messages),
    ranef_note = "glmmTMB ranef condsd; with REML=TRUE it includes fixed-effect uncertainty, so differs from lme4's",
    ranef = ranef_list(re, as.data.frame(ranef(m, condVar = TRUE))),
    fit_time = times, formula = formula_str, REML = reml
  )
}

levels_of <- function(d, cols) {
  fl <- list(); of <- list()
  for (cc in cols) { fl[[cc]] <- arr(levels(d[[cc]])); of[[cc]] <- is.ordered(d[[cc]]) }
  list(factor_levels = fl, ordered_factors = of)
}

contrast_info <- function(d, cols) {
  out <- list()
  for (cc in cols) {
    C <- contrasts(d[[cc]])
    cn <- colnames(C); if (is.null(cn)) cn <- as.character(seq_len(ncol(C)))
    out[[cc]] <- list(levels = arr(levels(d[[cc]])), contrast_function = if (is.null(attr(d[[cc]], "contrasts"))) (if (is.ordered(d[[cc]])) "contr.poly (default for ordered)" else "contr.treatment (default)") else "set on the data (see data_prep)", columns = arr(cn), matrix = mat(C),
                      columns_note = "column labels as lme4 appends them to the factor name in coefficient names")
  }
  out
}

results <- list()   # case_id -> summary row
failures <- list()
prov <- character()

## Fit one case. `data_expr` is the R code that builds the data (evaluated in a fresh env, result
## bound to `dname`); `extra` is function(m, env) returning extra results fields.
run_case <- function(case_id, dataset, data_file, data_file_root, dname, data_expr, formula_str,
                     family = "gaussian", link = "identity", REML = TRUE, factor_cols = character(),
                     contrast_cols = NULL, data_note = NULL, notes = NULL, extra = NULL, tmb = TRUE,
                     extra_top = NULL) {
  res <- tryCatch({
    env <- new.env(parent = globalenv())
    eval(parse(text = data_expr), envir = env)
    d <- get(dname, envir = env)
    glmm <- family != "gaussian"
    if (!glmm) {
      method <- if (REML) "REML" else "ML"
      call <- sprintf("lmer(%s, data = %s, REML = %s)", formula_str, dname, REML)
      engine <- "lme4::lmer"
    } else {
      method <- "Laplace"
      call <- sprintf("glmer(%s, data = %s, family = %s)", formula_str, dname, family)
      engine <- "lme4::glmer"
    }
    cap <- capture(eval(parse(text = call), envir = env))
    m <- cap$value
    lv <- levels_of(d, factor_cols)
    case <- list(
      case_id = case_id, dataset = dataset, data_file = data_file, data_file_root = data_file_root,
      data_note = data_note, data_prep = data_expr,
      factor_levels = lv$factor_levels, ordered_factors = lv$ordered_factors,
      formula = formula_str, family = family, link = link, method = method, notes = notes,
      r_call = call, versions = versions, engine = engine)
    if (!is.null(contrast_cols)) case$contrast_matrices <- contrast_info(d, contrast_cols)
    if (!is.null(extra_top)) for (nm in names(extra_top)) case[[nm]] <- extra_top[[nm]]
    case$results <- lme4_block(m, cap, timeit(call, env), glmm)
    if (!is.null(extra)) { ex <- extra(m, env); for (nm in names(ex)) case$results[[nm]] <- ex[[nm]] }
    prov_line <- sprintf("- `%s`: `%s` (data: `%s`)", case_id, call, gsub("\n", "; ", data_expr))
    if (glmm) {
      call_t <- sub(")$", sprintf(", control = %s)", TIGHT), call)
      cap_t <- capture(eval(parse(text = call_t), envir = env))
      blk <- lme4_block(cap_t$value, cap_t, timeit(call_t, env, 1), TRUE)
      blk$control <- TIGHT
      blk$r_call <- call_t
      if (!is.null(extra)) { ex <- extra(cap_t$value, env); for (nm in names(ex)) blk[[nm]] <- ex[[nm]] }
      case$lme4_tight <- blk
      case$laplace_note <- paste(
        "results: default glmer (tolPwrss = 1e-7); lme4_tight: the same with", TIGHT,
        "(PIRLS converged tightly, so its Laplace logLik is the one to compare at ~1e-6 with glmmTMB / an exact",
        "Laplace computation). Default lme4 estimates agree with the tight ones only to ~1e-3 relative.")
      prov_line <- paste0(prov_line, sprintf("; tight: `%s`", call_t))
    }
    if (tmb) {
      call_g <- if (glmm) sprintf("glmmTMB(%s, data = %s, family = %s)", formula_str, dname, family)
                else sprintf("glmmTMB(%s, data = %s, REML = %s)", formula_str, dname, REML)
      tb <- tryCatch({
        cap_g <- capture(eval(parse(text = call_g), envir = env))
        b <- tmb_block(cap_g$value, cap_g, timeit(call_g, env), formula_str, if (glmm) FALSE else REML, !glmm)
        b$r_call <- call_g
        b
      }, error = function(e) list(error = conditionMessage(e), r_call = call_g))
      case$glmmTMB <- tb
      prov_line <- paste0(prov_line, sprintf("; glmmTMB: `%s`%s", call_g,
                                             if (!is.null(tb$error)) paste0(" (FAILED: ", tb$error, ")") else ""))
    }
    prov_line <- paste0(prov_line, sprintf("; R %s, lme4 %s, glmmTMB %s, Matrix %s",
                                           getRversion(), versions$lme4, versions$glmmTMB, versions$Matrix))
    js <- toJSON(prep_json(case), digits = NA, auto_unbox = TRUE, null = "null", na = "null", pretty = TRUE, json_verbatim = TRUE)
    writeLines(js, file.path(OUT, paste0(case_id, ".json")))
    prov <<- c(prov, prov_line)
    ll_t <- if (glmm) case$lme4_tight$logLik else NA
    ll_g <- if (tmb && is.null(case$glmmTMB$error)) case$glmmTMB$logLik else NA
    results[[case_id]] <<- data.frame(case_id = case_id, logLik = case$results$logLik, logLik_tight = ll_t,
                                      logLik_glmmTMB = ll_g, singular = case$results$isSingular,
                                      n_warn = length(case$results$fit_warnings),
                                      fixef = paste(names(fixef(m)), collapse = ", "))
    "ok"
  }, error = function(e) { failures[[case_id]] <<- conditionMessage(e); conditionMessage(e) })
  cat(sprintf("%-32s %s\n", case_id, res))
}

## ------------------------------------------------ consistency check of the shared CSVs

chk <- function(name, rdata, cols) {
  f <- file.path(SHARED, paste0(name, ".csv"))
  if (!file.exists(f)) { cat("(no", f, ")\n"); return(invisible()) }
  csv <- read.csv(f, colClasses = "character")
  ok <- nrow(csv) == nrow(rdata) && all(vapply(cols, function(cc) {
    a <- rdata[[cc]]; b <- csv[[cc]]
    if (is.factor(a)) all(as.character(a) == b) else isTRUE(all.equal(as.numeric(b), as.numeric(a), tolerance = 0))
  }, TRUE))
  cat(sprintf("shared CSV %-12s matches R's data row by row: %s\n", name, ok))
  if (!ok) stop("shared CSV ", name, " differs from R's data")
}
chk("sleepstudy", sleepstudy, c("Reaction", "Days", "Subject"))
chk("cbpp", cbpp, c("herd", "incidence", "size", "period"))
chk("Orthodont", as.data.frame(nlme::Orthodont), c("distance", "age", "Subject", "Sex"))
chk("Dyestuff", Dyestuff, c("Batch", "Yield"))

## ------------------------------------------------ new CSVs

write_csv_exact(cake, file.path(OUT, "cake.csv"))
write_csv_exact(grouseticks, file.path(OUT, "grouseticks.csv"))
set.seed(1)
cbpp_var1 <- cbpp
cbpp_var1$var1 <- runif(nrow(cbpp), 1e3, 1e5)
write_csv_exact(cbpp_var1, file.path(OUT, "cbpp_var1.csv"))

## ------------------------------------------------ cases

SS <- "data/sleepstudy.csv"; SR <- "shared/reference"; TD <- "tests/data"
newdata_note <- paste(
  "predict_new = predict(m, newdata = data.frame(Days = c(0, 3.5, 12), off = c(0.1, 0.2, 0.3),",
  "Subject = c(\"308\", \"309\", \"NEW\")), allow.new.levels = TRUE): rows 1-2 use the subjects' conditional",
  "modes, row 3 (new level) the population value; the offset column `off` of newdata IS added",
  "(see predict_new_check = X_new beta + off + b, computed by hand). fitted = fitted(m) (conditional, per row,",
  "offset included); predict_population = predict(m, re.form = NA) (X beta + offset, per row).")

offset_extra <- function(m, env) {
  nd <- data.frame(Days = c(0, 3.5, 12), off = c(0.1, 0.2, 0.3), Subject = c("308", "309", "NEW"))
  pn <- predict(m, newdata = nd, allow.new.levels = TRUE)
  ## by hand: X beta + off + Z b (new level: b = 0)
  fe <- fixef(m); re <- ranef(m)$Subject
  X <- cbind(1, nd$Days)
  b <- t(sapply(nd$Subject, function(s) if (s %in% rownames(re)) unlist(re[s, , drop = TRUE]) else rep(0, ncol(re))))
  if (ncol(re) == 1) b <- matrix(b, ncol = 1)
  Zb <- rowSums(X[, seq_len(ncol(re)), drop = FALSE] * b)
  chk <- as.vector(X %*% fe + nd$off + Zb)
  list(fitted = arr(fitted(m)), predict_population = arr(predict(m, re.form = NA)),
       predict_new = arr(pn), predict_new_check = arr(chk),
       predict_newdata = list(Days = arr(nd$Days), off = arr(nd$off), Subject = arr(nd$Subject)),
       predict_note = newdata_note)
}
ss_off <- "ss <- sleepstudy\nss$off <- log(ss$Days + 1)"
off_note <- "sleepstudy (data/sleepstudy.csv) plus off = log(Days + 1) (natural log), i.e. off = numpy.log1p(Days)"
for (meth in c(TRUE, FALSE)) {
  run_case(if (meth) "sleep_offset_reml" else "sleep_offset_ml", "sleepstudy", SS, SR, "ss", ss_off,
           "Reaction ~ Days + offset(off) + (1 | Subject)", REML = meth, factor_cols = "Subject",
           data_note = off_note, extra = offset_extra)
}
run_case("sleep_offset_slope_reml", "sleepstudy", SS, SR, "ss", ss_off,
         "Reaction ~ Days + offset(off) + (Days | Subject)", REML = TRUE, factor_cols = "Subject",
         data_note = off_note, extra = offset_extra)

run_case("cbpp_offset_poisson", "cbpp", "data/cbpp.csv", SR, "cb", "cb <- cbpp",
         "incidence ~ period + offset(log(size)) + (1 | herd)", family = "poisson", link = "log",
         factor_cols = c("herd", "period"),
         extra = function(m, env) list(fitted = arr(fitted(m)),
                                       predict_population = arr(predict(m, re.form = NA)),
                                       predict_note = paste("fitted = fitted(m): response scale (expected counts),",
                                         "conditional on the herd modes, offset log(size) included;",
                                         "predict_population = predict(m, re.form = NA): LINK scale, X beta + log(size)")))

numgroup_note <- paste("Days stays numeric in the data (and in the fixed part, one slope); lme4 turns the grouping",
                       "variable into factor(Days), levels \"0\"..\"9\" (numeric order), listed under factor_levels$Days")
ss_plain <- "ss <- sleepstudy"
fl_days <- function(m, env) list()
for (meth in c(TRUE, FALSE)) {
  run_case(if (meth) "sleep_numgroup_reml" else "sleep_numgroup_ml", "sleepstudy", SS, SR, "ss",
           "ss <- sleepstudy", "Reaction ~ Days + (1 | Days)", REML = meth, factor_cols = "Subject",
           data_note = numgroup_note,
           extra_top = list(grouping_factor_levels = list(Days = arr(levels(factor(sleepstudy$Days))))))
}
run_case("sleep_numgroup_crossed_reml", "sleepstudy", SS, SR, "ss", "ss <- sleepstudy",
         "Reaction ~ Days + (Days | Subject) + (1 | Days)", REML = TRUE, factor_cols = "Subject",
         data_note = numgroup_note,
         extra_top = list(grouping_factor_levels = list(Days = arr(levels(factor(sleepstudy$Days))))))

orth_prep <- paste0("o <- as.data.frame(nlme::Orthodont)\n",
                    "o <- data.frame(distance = o$distance, age = o$age, ",
                    "Subject = factor(as.character(o$Subject), levels = levels(o$Subject)), Sex = o$Sex)")
orth_note <- "nlme::Orthodont (groupedData stripped; Subject as unordered factor, same level order); Sex levels Male, Female"
for (cc in list(c("orthodont_nested_fixed_reml", "distance ~ Sex/age + (1 | Subject)",
                  "Sex/age = Sex + Sex:age: a separate age slope per sex, no main age term (R names SexMale:age, SexFemale:age)"),
                c("orthodont_in_reml", "distance ~ age + age %in% Sex + (1 | Subject)",
                  "age %in% Sex = age:Sex; with age in the model R codes it as age:SexFemale (treatment contrast)"),
                c("orthodont_power_reml", "distance ~ (age + Sex)^2 + (1 | Subject)",
                  "(age + Sex)^2 = age + Sex + age:Sex"))) {
  run_case(cc[1], "Orthodont", "data/Orthodont.csv", SR, "o", orth_prep, cc[2], REML = TRUE,
           factor_cols = c("Subject", "Sex"), data_note = orth_note, notes = cc[3])
}

run_case("sleep_scale_reml", "sleepstudy", SS, SR, "ss", ss_plain, "Reaction ~ scale(Days) + (1 | Subject)",
         factor_cols = "Subject",
         data_note = sprintf("scale(Days) = (Days - mean(Days)) / sd(Days), sd with n-1: center %s, scale %s",
                             fmt_num(mean(sleepstudy$Days)), fmt_num(sd(sleepstudy$Days))),
         extra = function(m, env) list(scale_center = mean(sleepstudy$Days), scale_scale = sd(sleepstudy$Days)))

cake_prep <- "ck <- cake"
cake_note <- "lme4::cake, written to tests/data/cake.csv (temperature is an ORDERED factor 175<...<225; temp numeric)"
run_case("cake_reml", "cake", "cake.csv", TD, "ck", cake_prep,
         "angle ~ recipe * temperature + (1 | recipe:replicate)", factor_cols = c("replicate", "recipe", "temperature"),
         contrast_cols = c("recipe", "temperature"), data_note = cake_note,
         notes = "temperature is ordered, so R codes it with contr.poly (temperature.L .Q .C ^4 ^5); recipe with contr.treatment")
run_case("cake_sum_reml", "cake", "cake.csv", TD, "ck", "ck <- cake\ncontrasts(ck$recipe) <- contr.sum(3)",
         "angle ~ recipe + temp + (1 | replicate)", factor_cols = c("replicate", "recipe", "temperature"),
         contrast_cols = "recipe", data_note = cake_note,
         notes = "contr.sum(3) set on the data's recipe factor (coefficients recipe1, recipe2); temp numeric")
run_case("cake_helmert_reml", "cake", "cake.csv", TD, "ck", "ck <- cake\ncontrasts(ck$recipe) <- contr.helmert(3)",
         "angle ~ recipe + temp + (1 | replicate)", factor_cols = c("replicate", "recipe", "temperature"),
         contrast_cols = "recipe", data_note = cake_note,
         notes = "contr.helmert(3) set on the data's recipe factor (coefficients recipe1, recipe2); temp numeric")
run_case("cake_sumslope_reml", "cake", "cake.csv", TD, "ck", "ck <- cake\ncontrasts(ck$recipe) <- contr.sum(3)",
         "angle ~ recipe + temp + (recipe | replicate)", factor_cols = c("replicate", "recipe", "temperature"),
         contrast_cols = "recipe", data_note = cake_note,
         notes = paste("contr.sum(3) on recipe in the fixed AND the random part: random terms (Intercept), recipe1,",
                       "recipe2 (3x3 covariance per replicate). Check isSingular / conv_messages."))

run_case("sleep_power_reml", "sleepstudy", SS, SR, "ss", ss_plain, "Reaction ~ Days + I(Days^2) + (1 | Subject)",
         factor_cols = "Subject")
run_case("sleep_round_reml", "sleepstudy", SS, SR, "ss", ss_plain, "round(Reaction) ~ Days + (1 | Subject)",
         factor_cols = "Subject",
         data_note = "response round(Reaction); no Reaction value has fractional part exactly .5, so half-even vs half-up does not matter")
run_case("sleep_functions_reml", "sleepstudy", SS, SR, "ss", ss_plain,
         "Reaction ~ log1p(Days) + abs(Days - 4) + (sqrt(Days) | Subject)", factor_cols = "Subject")
run_case("sleep_log_reml", "sleepstudy", SS, SR, "ss", ss_plain,
         "log(Reaction) ~ log(Days + 1) + exp(Days / 10) + (1 | Subject)", factor_cols = "Subject",
         notes = "R deparses the term exp(Days / 10) as exp(Days/10) in the coefficient name")

xhead <- function(m, env) {
  X <- model.matrix(m)[1:10, , drop = FALSE]
  list(X_head = list(names = arr(colnames(X)), rows = mat(X)))
}
run_case("sleep_poly_reml", "sleepstudy", SS, SR, "ss", ss_plain, "Reaction ~ poly(Days, 2) + (1 | Subject)",
         factor_cols = "Subject",
         extra = function(m, env) {
           p <- poly(sleepstudy$Days, 2)
           c(xhead(m, env), list(poly_coefs = list(alpha = arr(attr(p, "coefs")$alpha), norm2 = arr(attr(p, "coefs")$norm2)),
             poly_note = "orthogonal polynomials from stats::poly(Days, 2); poly_coefs = attr(poly(Days, 2), 'coefs'); X_head = model.matrix(m)[1:10, ]"))
         })
spl_extra <- function(fun) function(m, env) {
  b <- fun(sleepstudy$Days)
  c(xhead(m, env), list(knots = arr(attr(b, "knots")), Boundary_knots = arr(attr(b, "Boundary.knots")),
                        intercept = attr(b, "intercept"), degree = if (is.null(attr(b, "degree"))) NULL else attr(b, "degree"),
                        basis_note = "X_head = model.matrix(m)[1:10, ]; knots / Boundary_knots from the basis on the full sleepstudy$Days"))
}
run_case("sleep_ns_ml", "sleepstudy", SS, SR, "ss", ss_plain, "Reaction ~ splines::ns(Days, df = 3) + (1 | Subject)",
         REML = FALSE, factor_cols = "Subject", extra = spl_extra(function(x) splines::ns(x, df = 3)))
run_case("sleep_bs_ml", "sleepstudy", SS, SR, "ss", ss_plain, "Reaction ~ splines::bs(Days, df = 4) + (1 | Subject)",
         REML = FALSE, factor_cols = "Subject", extra = spl_extra(function(x) splines::bs(x, df = 4)))

run_case("sleep_binfactor_laplace", "sleepstudy", SS, SR, "ss",
         "ss <- sleepstudy\nss$slow <- factor(ifelse(ss$Reaction > 300, \"yes\", \"no\"))",
         "slow ~ Days + (1 | Subject)", family = "binomial", link = "logit", factor_cols = c("Subject", "slow"),
         data_note = paste("slow = factor(ifelse(Reaction > 300, \"yes\", \"no\")): levels no, yes; for a factor response",
                           "glmer models P(not the first level) = P(slow == \"yes\")"))

run_case("cbpp_bigx_laplace", "cbpp", "data/cbpp.csv", SR, "cb", "cb <- cbpp\ncb$big <- cb$size * 1000",
         "cbind(incidence, size - incidence) ~ big + period + (1 | herd)", family = "binomial", link = "logit",
         factor_cols = c("herd", "period"), data_note = "cbpp plus big = size * 1000 (exact in floating point)",
         notes = "badly scaled predictor: lme4 may warn (fit_warnings); compare with lme4_tight / glmmTMB")

run_case("cbpp_var1_laplace", "cbpp_var1", "cbpp_var1.csv", TD, "cb",
         "set.seed(1)\ncb <- cbpp\ncb$var1 <- runif(nrow(cb), 1e3, 1e5)",
         "cbind(incidence, size - incidence) ~ var1 + period + (1 | herd)", family = "binomial", link = "logit",
         factor_cols = c("herd", "period"),
         data_note = paste("cbpp plus var1 = runif(56, 1e3, 1e5) after set.seed(1) (R's default Mersenne-Twister /",
                           "Inversion RNG); the values are in tests/data/cbpp_var1.csv (round-trip exact)"),
         notes = paste("lme4's own test case for autoscaling a predictor on the 1e3-1e5 scale: tests/testthat/test-summary.R",
                       "in lme4/lme4 (gfit1 <- glmer(form, control = glmerControl(autoscale = TRUE), data = cbpp, family = binomial);",
                       "autoscale is a newer lme4 option, absent in 1.1-31, so here the plain fit (autoscale = FALSE) is recorded)."))

run_case("dyestuff_barebar_reml", "Dyestuff", "data/Dyestuff.csv", SR, "dy", "dy <- Dyestuff",
         "Yield ~ 1 | Batch", factor_cols = "Batch",
         notes = "bare bar: lme4 reads Yield ~ 1 | Batch as Yield ~ 1 + (1 | Batch); see equivalence_check",
         extra = function(m, env) {
           m2 <- lmer(Yield ~ 1 + (1 | Batch), data = Dyestuff, REML = TRUE)
           list(equivalence_check = list(
             formula = "Yield ~ 1 + (1 | Batch)",
             logLik = as.numeric(logLik(m2)),
             max_abs_diff_fixef = max(abs(fixef(m) - fixef(m2))),
             max_abs_diff_theta = max(abs(getME(m, "theta") - getME(m2, "theta"))),
             abs_diff_logLik = abs(as.numeric(logLik(m)) - as.numeric(logLik(m2))),
             identical_fits = identical(fixef(m), fixef(m2)) && identical(getME(m, "theta"), getME(m2, "theta"))))
         })

## ------------------------------------------------ summary

writeLines(NUMCHECK$pairs, file.path(Sys.getenv("TMPDIR", "/tmp"), "issue18_numcheck.txt")); cat("number check pairs in", file.path(Sys.getenv("TMPDIR", "/tmp"), "issue18_numcheck.txt"), "\n")
writeLines(prov, file.path(Sys.getenv("TMPDIR", "/tmp"), "issue18_provenance_lines.md")); cat("provenance lines in", file.path(Sys.getenv("TMPDIR", "/tmp"), "issue18_provenance_lines.md"), "\n")
tab <- do.call(rbind, results)
rownames(tab) <- NULL
options(width = 250, digits = 12)
cat("\n==== summary ====\n")
print(tab[, c("case_id", "logLik", "logLik_tight", "logLik_glmmTMB", "singular", "n_warn")], row.names = FALSE)
cat("\nfixef names:\n")
for (i in seq_len(nrow(tab))) cat(sprintf("  %-30s %s\n", tab$case_id[i], tab$fixef[i]))
if (length(failures)) { cat("\nFAILED cases:\n"); for (n in names(failures)) cat(" ", n, ":", failures[[n]], "\n") } else cat("\nno failures\n")
