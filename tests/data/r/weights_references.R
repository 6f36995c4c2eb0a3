## lme4 / glmmTMB reference fits for prior weights (`weights =`): precision weights in lmer, the
## proportion-plus-size binomial idiom and integer weights in glmer, and glmmTMB's nbinom2 (a family
## lme4's glmer lacks) with and without weights.
##
## Run from the repository root:   Rscript tests/data/r/weights_references.R
## Writes tests/data/<case_id>.json (one per case) and prints a summary table. Every case is wrapped
## in tryCatch, so one failure does not stop the rest; a failed case is reported at the end and writes
## no JSON. Helpers and JSON layout are those of tests/data/r/issue18_references.R (copied, so that this
## script is self-contained), with a top-level "weights" key (the data column passed as `weights =`,
## null when unweighted) and, for glmmTMB-only cases, `results` = the glmmTMB fit plus
## `family_params`. Every lme4 case has an `lme4_tight` refit: glmer with TIGHT (tolPwrss), lmer with
## TIGHT_LMM (tight nloptwrap tolerances).
##
## Tested with R 4.2.2, lme4 1.1-31, glmmTMB 1.1.5, TMB 1.9.2, Matrix 1.5-3, nlme 3.1-162,
## jsonlite 1.8.4 (Debian bookworm packages).

suppressPackageStartupMessages({
  library(lme4)
  library(glmmTMB)
  library(jsonlite)
})

OUT <- file.path("tests", "data")
stopifnot(dir.exists(OUT))
SHARED <- "/work/shared/reference/data"  # the bundled reference CSVs (only used for a consistency check)

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

TIGHT <- "glmerControl(tolPwrss = 1e-10)"   # as in issue18_references.R
## lmer's default optimiser (nloptwrap / BOBYQA, default tolerances) stops about 1e-6 (relative) short of
## the optimum in sigma, theta and the SDs; the Gaussian cases also get an lme4_tight refit with these.
TIGHT_LMM <- "lmerControl(optCtrl = list(xtol_abs = 1e-12, ftol_abs = 1e-14, xtol_rel = 1e-12, ftol_rel = 1e-14))"

## ---------------------------------------------------------------- helpers (from issue18_references.R)

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

timeit <- function(call_text, env, n = 1) {
  el <- numeric(n); cpu <- numeric(n)
  for (i in seq_len(n)) {
    st <- system.time(suppressWarnings(suppressMessages(eval(parse(text = call_text), envir = env))))
    el[i] <- st[["elapsed"]]; cpu[i] <- st[["user.self"]] + st[["sys.self"]]
  }
  list(n_reps = n, elapsed_s = arr(el), cpu_s = arr(cpu), median_elapsed_s = median(el), median_cpu_s = median(cpu))
}

## Round trip checked with jsonlite's parser (yajl -> C strtod, correctly rounded, as Python's float()),
## NOT with as.numeric(): R's own string-to-double conversion is not always correctly rounded, e.g.
## as.numeric("0.764900134481242") gives 0x1.87a0fd8c9b1a8p-1 where strtod / Python give ...a7p-1, so
## issue18_references.R's check (as.numeric) would have kept that 15-digit string for a double it does
## not denote (hit here by a grouseticks ranef value).
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


## ---------------------------------------------------------------- helpers new here

## lme4-style theta (column-wise lower triangle of the Cholesky factor of each RE covariance,
## relative to sigma = 1: families without a dispersion in lme4's sense) from a glmmTMB fit.
tmb_theta <- function(m) {
  vc <- VarCorr(m)$cond
  nm <- character(); val <- numeric()
  for (g in names(vc)) {
    S <- as.matrix(vc[[g]]); L <- t(chol(S)); tn <- colnames(S)
    for (j in seq_len(ncol(S))) for (i in j:ncol(S)) {
      nm <- c(nm, if (i == j) paste0(g, ".", tn[i]) else paste0(g, ".", tn[i], ".", tn[j]))
      val <- c(val, L[i, j])
    }
  }
  list(names = arr(nm), values = arr(val),
       note = paste("glmmTMB-only fit: lme4's theta convention with sigma = 1 (as glmer.nb),",
                    "i.e. the lower-triangular Cholesky factor of each random-effect covariance, column-wise;",
                    "for a scalar random intercept it is the SD"))
}

results <- list()   # case_id -> summary row
failures <- list()
prov <- character()

## Fit one case. `data_expr` is the R code that builds the data (evaluated in a fresh env, result
## bound to `dname`); `weights` is the name of a column of that data passed as `weights =` to every
## call (NULL: unweighted); `extra` is function(m, env) returning extra results fields; `tmb_only`:
## fit with glmmTMB only (`results` is then the glmmTMB fit).
run_case <- function(case_id, dataset, data_file, data_file_root, dname, data_expr, formula_str,
                     family = "gaussian", link = "identity", REML = TRUE, factor_cols = character(),
                     data_note = NULL, notes = NULL, extra = NULL, tmb = TRUE, tmb_only = FALSE,
                     weights = NULL, extra_top = NULL) {
  res <- tryCatch({
    env <- new.env(parent = globalenv())
    eval(parse(text = data_expr), envir = env)
    d <- get(dname, envir = env)
    if (!is.null(weights)) stopifnot(weights %in% names(d))
    wtxt <- if (is.null(weights)) "" else sprintf(", weights = %s", weights)
    glmm <- family != "gaussian"
    call_g <- if (glmm) sprintf("glmmTMB(%s, data = %s, family = %s%s)", formula_str, dname, family, wtxt)
              else sprintf("glmmTMB(%s, data = %s%s, REML = %s)", formula_str, dname, wtxt, REML)
    lv <- levels_of(d, factor_cols)
    if (tmb_only) {
      method <- if (glmm) "Laplace" else if (REML) "REML" else "ML"
      call <- call_g
      engine <- "glmmTMB::glmmTMB"
    } else if (!glmm) {
      method <- if (REML) "REML" else "ML"
      call <- sprintf("lmer(%s, data = %s%s, REML = %s)", formula_str, dname, wtxt, REML)
      engine <- "lme4::lmer"
    } else {
      method <- "Laplace"
      call <- sprintf("glmer(%s, data = %s, family = %s%s)", formula_str, dname, family, wtxt)
      engine <- "lme4::glmer"
    }
    cap <- capture(eval(parse(text = call), envir = env))
    m <- cap$value
    case <- list(
      case_id = case_id, dataset = dataset, data_file = data_file, data_file_root = data_file_root,
      data_note = data_note, data_prep = data_expr,
      factor_levels = lv$factor_levels, ordered_factors = lv$ordered_factors,
      formula = formula_str, weights = weights, family = family, link = link, method = method, notes = notes,
      r_call = call, versions = versions, engine = engine)
    if (!is.null(extra_top)) for (nm in names(extra_top)) case[[nm]] <- extra_top[[nm]]
    if (tmb_only) {
      blk <- tmb_block(m, cap, timeit(call, env), formula_str, if (glmm) FALSE else REML, !glmm)
      fam_theta <- if (family %in% c("nbinom1", "nbinom2")) sigma(m) else NULL
      blk$nb_theta <- fam_theta
      blk$theta <- tmb_theta(m)
      blk["REMLcrit"] <- list(NULL)
      blk$deviance <- -2 * as.numeric(logLik(m))
      blk$deviance_note <- "glmmTMB-only fit: deviance here is -2 * logLik (Laplace)"
      blk$r_call <- call
      if (family == "nbinom2")
        case$family_params <- list(theta = fam_theta,
          note = paste("glmmTMB nbinom2 dispersion sigma(fit) = exp(betad): Var(y | b) = mu + mu^2 / theta",
                       "(the same theta as MASS::negative.binomial / lme4::glmer.nb)"))
      case$results <- blk
      if (!is.null(extra)) { ex <- extra(m, env); for (nm in names(ex)) case$results[[nm]] <- ex[[nm]] }
      prov_line <- sprintf("- `%s`: glmmTMB only: `%s` (data: `%s`)", case_id, call, gsub("\n", "; ", data_expr))
    } else {
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
      } else {
        call_t <- sub(")$", sprintf(", control = %s)", TIGHT_LMM), call)
        cap_t <- capture(eval(parse(text = call_t), envir = env))
        blk <- lme4_block(cap_t$value, cap_t, timeit(call_t, env, 1), FALSE)
        blk$control <- TIGHT_LMM
        blk$r_call <- call_t
        if (!is.null(extra)) { ex <- extra(cap_t$value, env); for (nm in names(ex)) blk[[nm]] <- ex[[nm]] }
        case$lme4_tight <- blk
        prov_line <- paste0(prov_line, sprintf("; tight: `%s`", call_t))
      }
      if (tmb) {
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
    }
    prov_line <- paste0(prov_line, sprintf("; R %s, lme4 %s, glmmTMB %s, Matrix %s",
                                           getRversion(), versions$lme4, versions$glmmTMB, versions$Matrix))
    js <- toJSON(prep_json(case), digits = NA, auto_unbox = TRUE, null = "null", na = "null", pretty = TRUE, json_verbatim = TRUE)
    writeLines(js, file.path(OUT, paste0(case_id, ".json")))
    prov <<- c(prov, prov_line)
    ll_t <- if (!tmb_only) case$lme4_tight$logLik else NA
    ll_g <- if (!tmb_only && tmb && is.null(case$glmmTMB$error)) case$glmmTMB$logLik else NA
    fe_names <- if (tmb_only) names(fixef(m)$cond) else names(fixef(m))
    results[[case_id]] <<- data.frame(case_id = case_id, engine = engine, logLik = case$results$logLik,
                                      logLik_tight = ll_t, logLik_glmmTMB = ll_g,
                                      singular = if (tmb_only) NA else case$results$isSingular,
                                      n_warn = length(case$results$fit_warnings),
                                      n_warn_tight = if (!tmb_only) length(case$lme4_tight$fit_warnings) else NA,
                                      n_warn_glmmTMB = if (!tmb_only && tmb && is.null(case$glmmTMB$error)) length(case$glmmTMB$fit_warnings) else NA,
                                      fixef = paste(fe_names, collapse = ", "))
    "ok"
  }, error = function(e) { failures[[case_id]] <<- conditionMessage(e); conditionMessage(e) })
  cat(sprintf("%-36s %s\n", case_id, res))
}

## ------------------------------------------------ consistency check of the data files

chk <- function(f, rdata, cols) {
  if (!file.exists(f)) { cat("(no", f, ")\n"); return(invisible()) }
  csv <- read.csv(f, colClasses = "character")
  ok <- nrow(csv) == nrow(rdata) && all(vapply(cols, function(cc) {
    a <- rdata[[cc]]; b <- csv[[cc]]
    if (is.factor(a)) all(as.character(a) == b) else isTRUE(all.equal(as.numeric(b), as.numeric(a), tolerance = 0))
  }, TRUE))
  cat(sprintf("CSV %-45s matches R's data row by row: %s\n", f, ok))
  if (!ok) stop("CSV ", f, " differs from R's data")
}
chk(file.path(SHARED, "sleepstudy.csv"), sleepstudy, c("Reaction", "Days", "Subject"))
chk(file.path(SHARED, "cbpp.csv"), cbpp, c("herd", "incidence", "size", "period"))
chk(file.path(OUT, "grouseticks.csv"), grouseticks, c("INDEX", "TICKS", "BROOD", "HEIGHT", "YEAR", "LOCATION", "cHEIGHT"))

## ------------------------------------------------ cases

SS <- "data/sleepstudy.csv"; SR <- "shared/reference"; TD <- "tests/data"

## --- sleepstudy, precision weights in lmer

## The marginal likelihood by hand (dense, 180 rows): y ~ N(X beta, sigma^2 (Z Lambda Lambda' Z' + W^-1)),
## W = diag(w). Shows how lme4 treats weights (residual variance sigma^2 / w_i, the 1/2 sum(log w) term
## included in logLik).
lmm_check <- function(m, env) {
  d <- get("ss", envir = env)
  Z <- as.matrix(getME(m, "Z")); X <- as.matrix(getME(m, "X")); y <- getME(m, "y")
  L <- as.matrix(getME(m, "Lambda")); s <- sigma(m); w <- weights(m)
  V <- s^2 * (Z %*% L %*% t(L) %*% t(Z) + diag(1 / w))
  r <- y - X %*% fixef(m)
  ldV <- as.numeric(determinant(V)$modulus)
  Vi <- solve(V)
  m2ll <- length(y) * log(2 * pi) + ldV + sum(r * (Vi %*% r))
  XtViX <- t(X) %*% Vi %*% X
  bgls <- solve(XtViX, t(X) %*% Vi %*% y)
  rg <- y - X %*% bgls
  p <- ncol(X); n <- length(y)
  reml <- (n - p) * log(2 * pi) + ldV + as.numeric(determinant(XtViX)$modulus) + sum(rg * (Vi %*% rg))
  list(loglik_check = list(
    minus2logLik_ml_byhand = m2ll,
    REMLcrit_byhand = reml,
    max_abs_diff_gls_beta = max(abs(bgls - fixef(m))),
    sum_log_w = sum(log(w)),
    weights_used = arr(w),
    note = paste("by hand at this fit's estimates (dense algebra): V = sigma^2 (Z Lambda Lambda' Z' + diag(1/w));",
                 "minus2logLik_ml_byhand = n log(2 pi) + log|V| + r'V^-1 r with r = y - X fixef;",
                 "REMLcrit_byhand = (n - p) log(2 pi) + log|V| + log|X'V^-1 X| + r'V^-1 r at the GLS beta.",
                 "Compare with minus2logLik (ML fits: -2 logLik; REML fits: deviance is the ML deviance at the",
                 "REML estimates, with sigma re-estimated by ML, so it differs slightly from the by-hand value,",
                 "which uses the fit's own sigma) and REMLcrit. weights_used = weights(m), row order of the data.")))
}

ss_w <- "ss <- sleepstudy\nss$w <- (1 + ss$Days %% 3) / 2"
ss_w_note <- paste("sleepstudy (data/sleepstudy.csv) plus w = (1 + Days %% 3) / 2 (R), i.e. in Python",
                   "w = (1 + Days % 3) / 2: w = 0.5, 1, 1.5 for Days = 0, 1, 2, 3, 4, 5, ... (exact in floating point)")
tmb_gauss_note <- paste(
  "lmer's weights are precision weights: residual variance sigma^2 / w_i (so logLik has + 1/2 sum(log w_i);",
  "see results.loglik_check). glmmTMB 1.1.5 instead multiplies each observation's log-density by w_i",
  "(log-likelihood weights, as if w_i copies): a different model for a Gaussian response, so glmmTMB's",
  "logLik and sigma differ from lmer's here (fixed effects nearly agree); the glmmTMB block is recorded",
  "as it comes and is NOT a second opinion on lmer's fit in this case.")
for (meth in c(TRUE, FALSE)) {
  run_case(if (meth) "sleep_weights_reml" else "sleep_weights_ml", "sleepstudy", SS, SR, "ss", ss_w,
           "Reaction ~ Days + (Days | Subject)", REML = meth, factor_cols = "Subject", weights = "w",
           data_note = ss_w_note, notes = tmb_gauss_note, extra = lmm_check)
}
run_case("sleep_weights_intercept_reml", "sleepstudy", SS, SR, "ss", ss_w,
         "Reaction ~ Days + (1 | Subject)", REML = TRUE, factor_cols = "Subject", weights = "w",
         data_note = ss_w_note, notes = tmb_gauss_note, extra = lmm_check)

## --- cbpp, proportion response with weights = size

run_case("cbpp_proportion_weights_laplace", "cbpp", "data/cbpp.csv", SR, "cb",
         "cb <- cbpp\ncb$prop <- cb$incidence / cb$size",
         "prop ~ period + (1 | herd)", family = "binomial", link = "logit", weights = "size",
         factor_cols = c("herd", "period"),
         data_note = paste("cbpp (data/cbpp.csv) plus prop = incidence / size (R's double division, as",
                           "Python's incidence / size)."),
         notes = paste("lme4's proportion idiom: a response in [0, 1] with weights = number of trials is the",
                       "same binomial model as cbind(incidence, size - incidence) ~ period + (1 | herd)",
                       "(cbpp_laplace); equivalence_check refits that form with the same control."),
         extra = function(m, env) {
           tight <- !is.null(m@call$control)
           call_c <- sprintf("glmer(cbind(incidence, size - incidence) ~ period + (1 | herd), data = cb, family = binomial%s)",
                             if (tight) paste0(", control = ", TIGHT) else "")
           m2 <- suppressWarnings(suppressMessages(eval(parse(text = call_c), envir = env)))
           list(equivalence_check = list(
             r_call = call_c, logLik = as.numeric(logLik(m2)),
             abs_diff_logLik = abs(as.numeric(logLik(m)) - as.numeric(logLik(m2))),
             max_abs_diff_fixef = max(abs(fixef(m) - fixef(m2))),
             max_abs_diff_theta = max(abs(getME(m, "theta") - getME(m2, "theta")))))
         })

## --- grouseticks, integer weights (Poisson in glmer and glmmTMB; nbinom2 in glmmTMB only)

gt_prep <- paste0("gt <- grouseticks\ngt$HEIGHT_cs <- as.numeric(scale(gt$HEIGHT))\n",
                  "gt$w <- 1 + (seq_len(nrow(gt)) %% 3)")
gt_prep0 <- "gt <- grouseticks\ngt$HEIGHT_cs <- as.numeric(scale(gt$HEIGHT))"
gt_note_base <- paste(
  "grouseticks.csv is lme4::grouseticks (written by tests/data/r/issue18_references.R; checked here row by row",
  "against R's data). It has no HEIGHT_cs column: HEIGHT_cs = (HEIGHT - mean(HEIGHT)) / sd(HEIGHT), sd with",
  "n - 1 (R's scale(); see scale_center / scale_scale), as in grouseticks_laplace. YEAR is a factor (levels 95,",
  "96, 97; baseline 95); BROOD a factor (118 levels, see factor_levels).")
gt_note_w <- paste(gt_note_base,
  "w = 1 + (seq_len(nrow(gt)) %% 3) in R: integer weights 1..3 by 1-based row number in the CSV's row order,",
  "rows 1, 2, 3, 4, ... get w = 2, 3, 1, 2, ...; in Python w = 1 + (numpy.arange(1, n + 1) % 3).")
gt_top <- list(scale_center = mean(grouseticks$HEIGHT), scale_scale = sd(grouseticks$HEIGHT))

## Integer likelihood weights = each row repeated w times (same random-effect level), so the weighted
## fit must equal the fit on the expanded data: a check of what the engine does with the weights.
expand_check <- function(fun_text) function(m, env) {
  gt <- get("gt", envir = env)
  e2 <- new.env(parent = env)
  e2$gtx <- gt[rep(seq_len(nrow(gt)), gt$w), ]
  tight <- inherits(m, "merMod") && !is.null(m@call$control)
  call_x <- sprintf(fun_text, if (tight) paste0(", control = ", TIGHT) else "")
  m2 <- suppressWarnings(suppressMessages(eval(parse(text = call_x), envir = e2)))
  fe1 <- if (inherits(m, "merMod")) fixef(m) else fixef(m)$cond
  fe2 <- if (inherits(m2, "merMod")) fixef(m2) else fixef(m2)$cond
  list(equivalence_check = list(
    r_call = call_x, data = "gtx <- gt[rep(seq_len(nrow(gt)), gt$w), ] (each row repeated w times)",
    logLik = as.numeric(logLik(m2)),
    abs_diff_logLik = abs(as.numeric(logLik(m)) - as.numeric(logLik(m2))),
    max_abs_diff_fixef = max(abs(fe1 - fe2))))
}

run_case("grouseticks_weights_poisson", "lme4::grouseticks", "grouseticks.csv", TD, "gt", gt_prep,
         "TICKS ~ YEAR + HEIGHT_cs + (1 | BROOD)", family = "poisson", link = "log", weights = "w",
         factor_cols = c("YEAR", "BROOD"), data_note = gt_note_w, extra_top = gt_top,
         notes = paste("Poisson prior weights multiply each row's log-likelihood in glmer (family aic:",
                       "-2 sum(w * dpois(y, mu, log = TRUE))) and in glmmTMB, so both engines fit the same",
                       "model; equivalence_check refits glmer on the data with each row repeated w times."),
         extra = expand_check("glmer(TICKS ~ YEAR + HEIGHT_cs + (1 | BROOD), data = gtx, family = poisson%s)"))

nb_note <- paste("glmmTMB only (lme4's glmer has no nbinom2 family; glmer.nb is a different, profiled fit).",
                 "results: glmmTMB's Laplace fit; family_params.theta = sigma(fit), the NB2 dispersion with",
                 "Var(y | b) = mu + mu^2 / theta.")
run_case("grouseticks_weights_nbinom2", "lme4::grouseticks", "grouseticks.csv", TD, "gt", gt_prep,
         "TICKS ~ YEAR + HEIGHT_cs + (1 | BROOD)", family = "nbinom2", link = "log", weights = "w",
         factor_cols = c("YEAR", "BROOD"), data_note = gt_note_w, extra_top = gt_top, tmb_only = TRUE,
         notes = paste(nb_note, "glmmTMB multiplies each row's NB log-density by w; equivalence_check refits",
                       "on the data with each row repeated w times."),
         extra = expand_check("glmmTMB(TICKS ~ YEAR + HEIGHT_cs + (1 | BROOD), data = gtx, family = nbinom2%s)"))
run_case("grouseticks_nbinom2", "lme4::grouseticks", "grouseticks.csv", TD, "gt", gt_prep0,
         "TICKS ~ YEAR + HEIGHT_cs + (1 | BROOD)", family = "nbinom2", link = "log",
         factor_cols = c("YEAR", "BROOD"), data_note = gt_note_base, extra_top = gt_top, tmb_only = TRUE,
         notes = paste(nb_note, "Unweighted baseline for grouseticks_weights_nbinom2."))

## ------------------------------------------------ summary

tmpd <- Sys.getenv("TMPDIR", "/tmp")
writeLines(NUMCHECK$pairs, file.path(tmpd, "weights_numcheck.txt")); cat("number check pairs in", file.path(tmpd, "weights_numcheck.txt"), "\n")
writeLines(prov, file.path(tmpd, "weights_provenance_lines.md")); cat("provenance lines in", file.path(tmpd, "weights_provenance_lines.md"), "\n")
tab <- do.call(rbind, results)
rownames(tab) <- NULL
options(width = 250, digits = 12)
cat("\n==== summary ====\n")
print(tab[, c("case_id", "engine", "logLik", "logLik_tight", "logLik_glmmTMB", "singular", "n_warn", "n_warn_tight", "n_warn_glmmTMB")], row.names = FALSE)
cat("\nfixef names:\n")
for (i in seq_len(nrow(tab))) cat(sprintf("  %-34s %s\n", tab$case_id[i], tab$fixef[i]))
if (length(failures)) { cat("\nFAILED cases:\n"); for (n in names(failures)) cat(" ", n, ":", failures[[n]], "\n") } else cat("\nno failures\n")
