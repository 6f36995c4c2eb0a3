## glmmTMB reference fits for the Gamma (log link), nbinom1 and beta (logit link) families, with and
## without a dispersion formula.
##
## Run from the repository root:   Rscript tests/data/r/family_references.R
## Writes tests/data/beta_sim.csv (a simulated data set, see BETA_NOTE), tests/data/<case_id>.json (one per
## case) and prints a summary table. Every case is wrapped in tryCatch, so one failure does not stop the
## rest; a failed case is reported at the end and writes no JSON. Helpers, number formatting and JSON layout
## are those of tests/data/r/zero_references.R (copied, so that this script is self-contained):
## `results` = the default glmmTMB fit, `tight` = the same call with
## control = glmmTMBControl(optCtrl = list(iter.max = 1e4, eval.max = 1e4, rel.tol = 1e-14, x.tol = 1e-12)),
## `tight_vs_default` = the largest absolute differences between the two, and `newton_polish` = Newton
## steps on glmmTMB's own Laplace objective (m$obj) from the default optimum to max |gradient| < 1e-8.
## New here: `parameterisation_check` = the same model without its random-effect terms, fitted by glmmTMB,
## whose (exact, no Laplace) logLik is compared with a hand-written sum of stats::d* log densities under
## the stated meaning of the dispersion parameter (family_params).
##
## Data: sleepstudy = lme4::sleepstudy (checked row by row against ../shared/reference/data/sleepstudy.csv),
## Salamanders = glmmTMB::Salamanders (checked against tests/data/salamanders.csv, written by
## zero_references.R; not rewritten here), beta_sim = simulated here and written to tests/data/beta_sim.csv.
##
## Tested with R 4.2.2, glmmTMB 1.1.5, TMB 1.9.2, lme4 1.1-31, Matrix 1.5-3, jsonlite 1.8.4
## (Debian bookworm packages).

suppressPackageStartupMessages({
  library(glmmTMB)
  library(jsonlite)
})

OUT <- file.path("tests", "data")
stopifnot(dir.exists(OUT))
SHARED <- file.path("..", "shared", "reference", "data")  # the bundled reference CSVs (consistency check only)

versions <- list(
  R = R.version.string,
  glmmTMB = as.character(packageVersion("glmmTMB")),
  TMB = as.character(packageVersion("TMB")),
  lme4 = as.character(packageVersion("lme4")),
  Matrix = as.character(packageVersion("Matrix")),
  jsonlite = as.character(packageVersion("jsonlite")),
  source = "Debian bookworm packages (r-base-core, r-cran-*)"
)

TIGHT <- "glmmTMBControl(optCtrl = list(iter.max = 1e4, eval.max = 1e4, rel.tol = 1e-14, x.tol = 1e-12))"
TOL_MOVE <- 1e-6   # threshold for reporting that the tight refit moved something

## ---------------------------------------------------------------- helpers (from zero_references.R)

arr <- function(x) { if (is.null(x)) x <- character(0); I(unname(as.vector(x))) }  # always a JSON array, even of length 1
mat <- function(x) { x <- as.matrix(x); dimnames(x) <- NULL; x }

capture <- function(expr) {
  w <- character(); msg <- character()
  val <- withCallingHandlers(expr,
    warning = function(c) { w <<- c(w, conditionMessage(c)); invokeRestart("muffleWarning") },
    message = function(c) { msg <<- c(msg, conditionMessage(c)); invokeRestart("muffleMessage") })
  list(value = val, warnings = w, messages = msg)
}

## Round trip checked with jsonlite's parser (yajl -> C strtod, correctly rounded, as Python's float()),
## NOT with as.numeric(), which is not always correctly rounded (see weights_references.R).
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

levels_of <- function(d, cols) {
  fl <- list(); of <- list()
  for (cc in cols) { fl[[cc]] <- arr(levels(d[[cc]])); of[[cc]] <- is.ordered(d[[cc]]) }
  list(factor_levels = fl, ordered_factors = of)
}

## ---------------------------------------------------------------- helpers new here

## ranef (conditional modes and conditional SDs) of one component ("cond" or "zi").
ranef_list <- function(re_obj, df, component) {
  df <- df[df$component == component, ]
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

## Fixed effects of the three components with SEs from the full covariance (vcov(m, full = TRUE),
## ordered cond, zi, disp, then the RE parameters); null for a component without fixed effects.
fixef_blocks <- function(m) {
  fe <- fixef(m)
  capV <- capture(vcov(m, full = TRUE)); V <- as.matrix(capV$value)
  cn <- colnames(V)
  prefix <- c(cond = "", zi = "zi~", disp = "d~")
  out <- list(); pos <- 0
  for (comp in c("cond", "zi", "disp")) {
    b <- fe[[comp]]
    if (length(b) == 0) { out[comp] <- list(NULL); next }
    idx <- pos + seq_along(b); pos <- pos + length(b)
    stopifnot(identical(unname(cn[idx]), paste0(prefix[[comp]], names(b))))
    Vc <- V[idx, idx, drop = FALSE]
    out[[comp]] <- list(names = arr(names(b)), estimate = arr(b), se = arr(sqrt(diag(Vc))), vcov = mat(Vc))
  }
  list(fixef = out, vcov_warnings = arr(capV$warnings))
}

ngrps_of <- function(m, comp) {
  fl <- m$modelInfo$reTrms[[comp]]$flist
  if (is.null(fl) || length(fl) == 0) return(NULL)
  as.list(vapply(fl, nlevels, 1L))
}

## Largest |tight - default| over the quantities a test would compare.
tight_diff <- function(a, b) {
  d <- list()
  add <- function(nm, x, y) {
    x <- unlist(x); y <- unlist(y)
    if (length(x) == 0 && length(y) == 0) return()
    d[[nm]] <<- if (length(x) != length(y)) NA_real_ else max(abs(x - y))
  }
  for (comp in c("cond", "zi", "disp")) if (!is.null(a$fixef[[comp]])) {
    add(paste0("fixef.", comp, ".estimate"), a$fixef[[comp]]$estimate, b$fixef[[comp]]$estimate)
    add(paste0("fixef.", comp, ".se"), a$fixef[[comp]]$se, b$fixef[[comp]]$se)
  }
  for (comp in c("cond", "zi")) if (!is.null(a$varcorr[[comp]]))
    add(paste0("varcorr.", comp, ".sd"), lapply(a$varcorr[[comp]], `[[`, "sd"), lapply(b$varcorr[[comp]], `[[`, "sd"))
  add("logLik", a$logLik, b$logLik)
  for (nm in names(a$family_params)) add(paste0("family_params.", nm), a$family_params[[nm]], b$family_params[[nm]])
  mx <- suppressWarnings(max(unlist(d), na.rm = TRUE))
  list(tolerance = TOL_MOVE, max_abs_diff = d, overall_max_abs_diff = mx,
       moved_beyond_tol = is.finite(mx) && mx > TOL_MOVE,
       not_compared = arr(names(d)[is.na(unlist(d))]),
       note = "absolute differences tight - default; not_compared: NA in both fits (e.g. logLik NA when pdHess is FALSE)")
}

## Newton polish of the outer (Laplace) objective from the default fit's optimum: nlminb stops with
## |gradient| ~ 1e-4 .. 1e-3 and, with the tight control, reports "singular convergence (7)" without
## getting much closer, so the estimates of `results` / `tight` are ~1e-5 from the optimum. Newton steps
## use TMB's exact gradient (obj$gr) and optimHess (finite differences of obj$gr), with step halving.
## Run AFTER everything else has been extracted from m (it moves m$obj's internal state).
## (Adapted from zero_references.R: family parameters of Gamma / nbinom1 / beta, random-effect SDs and
## correlations of vector-valued terms from m$obj$report at the polished parameters.)
newton_polish <- function(m, maxit = 50, gtol = 1e-8) {
  obj <- m$obj; p0 <- m$fit$par; p <- p0; f <- obj$fn(p); steps <- 0; note <- "converged"
  for (i in seq_len(maxit)) {
    g <- as.vector(obj$gr(p))
    if (!all(is.finite(g))) { note <- "non-finite gradient"; break }
    if (max(abs(g)) < gtol) break
    H <- optimHess(p, obj$fn, obj$gr)
    dlt <- tryCatch(solve(H, g), error = function(e) NULL)
    if (is.null(dlt)) { note <- "singular Hessian"; break }
    lam <- 1; ok <- FALSE
    for (k in 1:30) {
      pn <- p - lam * dlt; fn <- obj$fn(pn)
      if (is.finite(fn) && fn <= f + 1e-12) { ok <- TRUE; break }
      lam <- lam / 2
    }
    if (!ok) { note <- "no descent step found"; break }
    p <- pn; f <- fn; steps <- i
    if (i == maxit) note <- "iteration limit"
  }
  f <- obj$fn(p); g <- as.vector(obj$gr(p))
  rep <- obj$report(obj$env$last.par)   # last.par = (p, conditional modes at p); before sdreport moves it
  capS <- capture(TMB::sdreport(obj, par.fixed = p)); sdr <- capS$value
  V <- sdr$cov.fixed
  se <- suppressWarnings(sqrt(diag(V)))
  fe <- fixef(m)
  comp_par <- c(cond = "beta", zi = "betazi", disp = "betad")
  fx <- list()
  for (comp in names(comp_par)) {
    idx <- which(names(p) == comp_par[[comp]])
    if (length(idx) == 0 || length(fe[[comp]]) == 0) { fx[comp] <- list(NULL); next }
    stopifnot(length(idx) == length(fe[[comp]]))
    fx[[comp]] <- list(names = arr(names(fe[[comp]])), estimate = arr(p[idx]), se = arr(se[idx]))
  }
  ## one random-effect term per case here: scalar SD for a random intercept (= exp(theta)), else the SD
  ## vector and the correlation matrix (re_corr)
  stopifnot(length(rep$sd) == 1)
  sdv <- as.vector(rep$sd[[1]])
  re_sd <- if (length(sdv) == 1) sdv else arr(sdv)
  re_corr <- if (length(sdv) == 1) NULL else mat(rep$corr[[1]])
  if (length(sdv) == 1) stopifnot(isTRUE(all.equal(sdv, exp(unname(p[names(p) == "theta"])), tolerance = 1e-14)))
  bd <- p[names(p) == "betad"]; names(bd) <- names(fe$disp)
  list(
    note = paste("Newton polish of the default fit (not a glmmTMB call): Newton steps on glmmTMB's own Laplace",
                 "objective m$obj (exact TMB gradient, optimHess Hessian, step halving) from m$fit$par until",
                 "max |gradient| <", gtol, "; se from TMB::sdreport(m$obj, par.fixed = par);",
                 "re_sd (and re_corr for a vector-valued term, order as the term's columns) from m$obj$report",
                 "at the polished parameters (exp(theta) for a scalar random intercept); family_params from the",
                 "polished betad as in results."),
    status = note, steps = steps,
    par = list(names = arr(names(p)), values = arr(p)),
    logLik = -f, max_abs_gradient = max(abs(g)),
    max_abs_diff_par_vs_default = max(abs(p - p0)),
    logLik_gain_vs_default = -f - (-m$fit$objective),
    fixef = fx,
    re_sd = list(cond = re_sd, zi = NULL),
    re_corr = list(cond = re_corr, zi = NULL),
    family_params = fam_params(family(m)$family, bd),
    pdHess = sdr$pdHess, sdreport_warnings = arr(capS$warnings))
}

## ---------------------------------------------------------------- family parameters

## From the dispersion coefficients bd (glmmTMB's betad, named as fixef(m)$disp; glmmTMB 1.1.5 uses a log
## link for the dispersion model of all three families):
##   Gamma:   betad = log(shape); sigma() = exp(-betad / 2) = 1 / sqrt(shape) = the coefficient of variation
##   nbinom1: betad = log(phi),   Var = mu (1 + phi);        sigma() = phi
##   beta:    betad = log(phi),   Var = mu (1 - mu) / (1 + phi); sigma() = phi
## s: sigma(fit) (used for the dispformula = ~1 cases, as asked); NULL or NA: computed from bd.
fam_params <- function(fam, bd, s = NULL) {
  if (length(bd) == 0) return(list())
  one <- length(bd) == 1
  if (one && (is.null(s) || is.na(s))) s <- if (fam == "Gamma") exp(-0.5 * unname(bd)) else exp(unname(bd))
  if (fam == "Gamma") {
    if (one) return(list(sigma = s, shape = 1 / s^2))
    stopifnot(identical(names(bd), c("(Intercept)", "Days")))
    d <- 0:9; lp <- unname(bd[1] + bd[2] * d)
    return(list(Days = arr(d), log_shape_by_Days = arr(lp), shape_by_Days = arr(exp(lp)),
                sigma_by_Days = arr(exp(-0.5 * lp))))
  }
  if (fam %in% c("nbinom1", "beta")) {
    if (one) return(list(phi = s))
    stopifnot(identical(names(bd), c("(Intercept)", "minedno")))
    return(list(phi_by_mined = list(yes = exp(unname(bd[1])), no = exp(unname(bd[1] + bd[2])))))
  }
  stop("family not handled: ", fam)
}

tmb_block <- function(m, cap, elapsed, call_text) {
  fb <- fixef_blocks(m)
  vc <- VarCorr(m)
  ll <- logLik(m)
  capR <- capture(ranef(m, condVar = TRUE)); re <- capR$value
  redf <- as.data.frame(re)
  s <- sigma(m)
  list(
    r_call = call_text,
    fixef = fb$fixef,
    vcov_warnings = fb$vcov_warnings,
    varcorr = list(cond = if (length(vc$cond)) varcorr_list(vc$cond) else NULL,
                   zi = if (length(vc$zi)) varcorr_list(vc$zi) else NULL),
    logLik = as.numeric(ll), logLik_df = attr(ll, "df"),
    minus2logLik = -2 * as.numeric(ll), AIC = AIC(m), BIC = BIC(m),
    nobs = nobs(m), ngrps = list(cond = ngrps_of(m, "cond"), zi = ngrps_of(m, "zi")),
    family_params = fam_params(family(m)$family, fixef(m)$disp, s),
    sigma = if (is.na(s)) NULL else s,
    par = list(names = arr(names(m$fit$par)), values = arr(m$fit$par)),
    objective = m$fit$objective,
    convergence = m$fit$convergence, optimizer_message = m$fit$message,
    iterations = m$fit$iterations, evaluations = as.list(m$fit$evaluations),
    pdHess = m$sdr$pdHess,
    max_abs_gradient = max(abs(m$sdr$gradient.fixed)),
    minus_objective = -m$fit$objective,
    fit_warnings = arr(cap$warnings), fit_messages = arr(cap$messages),
    ranef = list(cond = ranef_list(re$cond, redf, "cond"),
                 zi = if (length(re$zi)) ranef_list(re$zi, redf, "zi") else NULL),
    ranef_warnings = arr(capR$warnings),
    fit_time_s = elapsed
  )
}

## Parameterisation check: the model without its random-effect terms (lme4::nobars), fitted by glmmTMB
## (no random effects, so logLik is exact), against hand-written stats::d* log densities with
## mu = linkinv(X beta) and the dispersion parameter exp(Xd betad) read as stated in fam_params.
param_check <- function(d, data_expr, formula_str, dispformula, family_str, yname) {
  f0 <- paste(deparse(lme4::nobars(as.formula(formula_str)), width.cutoff = 500L), collapse = "")
  args <- c(sprintf("data = %s", data_expr),
            if (dispformula != "~1") sprintf("dispformula = %s", dispformula),
            sprintf("family = %s", family_str))
  call <- sprintf("glmmTMB(%s, %s)", f0, paste(args, collapse = ", "))
  cap <- capture(eval(parse(text = call), envir = globalenv())); ff <- cap$value
  fam <- family(ff)$family
  X <- model.matrix(lme4::nobars(as.formula(formula_str)), d)
  stopifnot(identical(colnames(X), names(fixef(ff)$cond)))
  eta <- as.vector(X %*% fixef(ff)$cond)
  Xd <- model.matrix(as.formula(dispformula), d)
  lpd <- as.vector(Xd %*% fixef(ff)$disp)
  y <- d[[yname]]
  out <- list(r_call = call, logLik_glmmTMB = as.numeric(logLik(ff)), fit_warnings = arr(cap$warnings))
  if (fam == "Gamma") {
    mu <- exp(eta); k <- exp(lpd)
    out$density <- "sum(dgamma(y, shape = k, scale = mu / k, log = TRUE)), mu = exp(X beta), k = shape = exp(Xd betad)"
    out$logLik_hand <- sum(dgamma(y, shape = k, scale = mu / k, log = TRUE))
    k2 <- exp(-2 * lpd)   # the alternative reading: Xd betad = log(sigma), shape = 1 / sigma^2
    out$logLik_hand_if_betad_were_log_sigma <- sum(dgamma(y, shape = k2, scale = mu / k2, log = TRUE))
    if (dispformula == "~1") out$sigma_check <- list(sigma_fit = sigma(ff), one_over_sqrt_exp_betad = 1 / sqrt(k[1]))
  } else if (fam == "nbinom1") {
    mu <- exp(eta); phi <- exp(lpd)
    out$density <- "sum(dnbinom(y, size = mu / phi, mu = mu, log = TRUE)), mu = exp(X beta), phi = exp(Xd betad): Var = mu + mu^2 / size = mu (1 + phi)"
    out$logLik_hand <- sum(dnbinom(y, size = mu / phi, mu = mu, log = TRUE))
    if (dispformula == "~1") out$sigma_check <- list(sigma_fit = sigma(ff), exp_betad = phi[1])
  } else if (fam == "beta") {
    mu <- plogis(eta); phi <- exp(lpd)
    out$density <- "sum(dbeta(y, mu * phi, (1 - mu) * phi, log = TRUE)), mu = plogis(X beta), phi = exp(Xd betad): Var = mu (1 - mu) / (1 + phi)"
    out$logLik_hand <- sum(dbeta(y, mu * phi, (1 - mu) * phi, log = TRUE))
    if (dispformula == "~1") out$sigma_check <- list(sigma_fit = sigma(ff), exp_betad = phi[1])
  } else stop("family not handled: ", fam)
  out$abs_diff <- abs(out$logLik_hand - out$logLik_glmmTMB)
  out$agrees <- out$abs_diff < 1e-8 * max(1, abs(out$logLik_glmmTMB))
  out
}

results <- list()   # case_id -> summary row
failures <- list()
prov <- character()

## Fit one case. `data_expr` is the R expression passed as `data =` (evaluated in the global env).
run_case <- function(case_id, dataset, data_file, data_file_root, data_expr, formula_str, dispformula = "~1",
                     family, yname, factor_cols, data_note = NULL, data_prep = data_expr, notes = NULL) {
  res <- tryCatch({
    d <- eval(parse(text = data_expr))
    args <- c(sprintf("data = %s", data_expr),
              if (dispformula != "~1") sprintf("dispformula = %s", dispformula),
              sprintf("family = %s", family))
    call <- sprintf("glmmTMB(%s, %s)", formula_str, paste(args, collapse = ", "))
    call_t <- sub(")$", sprintf(", control = %s)", TIGHT), call)
    lv <- levels_of(d, factor_cols)

    t0 <- proc.time()[["elapsed"]]
    cap <- capture(eval(parse(text = call), envir = globalenv()))
    el <- proc.time()[["elapsed"]] - t0
    m <- cap$value
    t0 <- proc.time()[["elapsed"]]
    cap_t <- capture(eval(parse(text = call_t), envir = globalenv()))
    el_t <- proc.time()[["elapsed"]] - t0
    mt <- cap_t$value

    blk <- tmb_block(m, cap, el, call)
    blk_t <- tmb_block(mt, cap_t, el_t, call_t)
    blk_t$control <- TIGHT
    td <- tight_diff(blk, blk_t)
    pc <- tryCatch(param_check(d, data_expr, formula_str, dispformula, family, yname),
                   error = function(e) list(error = conditionMessage(e)))
    pol <- tryCatch(newton_polish(m), error = function(e) list(status = paste("failed:", conditionMessage(e))))

    case <- list(
      case_id = case_id, dataset = dataset, data_file = data_file, data_file_root = data_file_root,
      data_note = data_note, data_prep = data_prep,
      factor_levels = lv$factor_levels, ordered_factors = lv$ordered_factors,
      nrow_data = nrow(d),
      formula = formula_str, ziformula = "~0", dispformula = dispformula,
      family = family(m)$family, link = family(m)$link, method = "Laplace (ML)",
      notes = notes, convergence_note = CONV_NOTE,
      r_call = call, versions = versions, engine = "glmmTMB::glmmTMB",
      results = blk, tight = blk_t, tight_vs_default = td, newton_polish = pol,
      parameterisation_check = pc)
    js <- toJSON(prep_json(case), digits = NA, auto_unbox = TRUE, null = "null", na = "null", pretty = TRUE, json_verbatim = TRUE)
    writeLines(js, file.path(OUT, paste0(case_id, ".json")))
    prov <<- c(prov, sprintf("- `%s`: `%s`; tight: the same with `control = %s`; R %s, glmmTMB %s, TMB %s, lme4 %s, Matrix %s",
                             case_id, call, TIGHT, getRversion(), versions$glmmTMB, versions$TMB,
                             packageVersion("lme4"), packageVersion("Matrix")))
    fmt_fp <- function(fp, dg) { u <- unlist(fp); paste(sprintf("%s=%s", names(u), sprintf(paste0("%.", dg, "g"), u)), collapse = " ") }
    results[[case_id]] <<- data.frame(
      case_id = case_id, logLik = blk$logLik, logLik_tight = blk_t$logLik,
      conv = blk$convergence, conv_t = blk_t$convergence, pdHess = blk$pdHess, pdHess_t = blk_t$pdHess,
      n_warn = length(cap$warnings), n_warn_t = length(cap_t$warnings),
      tight_maxdiff = td$overall_max_abs_diff,
      grad = blk$max_abs_gradient, grad_t = blk_t$max_abs_gradient,
      logLik_polish = if (is.null(pol$logLik)) NA else pol$logLik, grad_polish = if (is.null(pol$max_abs_gradient)) NA else pol$max_abs_gradient,
      polish_status = pol$status, polish_dpar = if (is.null(pol$max_abs_diff_par_vs_default)) NA else pol$max_abs_diff_par_vs_default,
      family_params_polish = fmt_fp(pol$family_params, 15),
      family_params = fmt_fp(blk$family_params, 10),
      family_params_tight = fmt_fp(blk_t$family_params, 10),
      check = if (!is.null(pc$error)) paste("ERROR", pc$error) else
        sprintf("glmmTMB %.12g hand %.12g diff %.2g agrees %s%s", pc$logLik_glmmTMB, pc$logLik_hand, pc$abs_diff, pc$agrees,
                if (!is.null(pc$logLik_hand_if_betad_were_log_sigma)) sprintf(" (if log sigma: %.12g)", pc$logLik_hand_if_betad_were_log_sigma) else ""),
      warnings = paste(unique(c(cap$warnings)), collapse = " | "),
      warnings_t = paste(unique(c(cap_t$warnings)), collapse = " | "),
      opt_msg = blk$optimizer_message, opt_msg_t = blk_t$optimizer_message)
    "ok"
  }, error = function(e) { failures[[case_id]] <<- conditionMessage(e); conditionMessage(e) })
  cat(sprintf("%-34s %s\n", case_id, res))
}

## ------------------------------------------------ data

parse_same <- function(csv_col, a) if (is.factor(a) || is.character(a)) all(as.character(a) == csv_col) else all(parse_exact(csv_col) == as.numeric(a))

## sleepstudy (lme4) against the shared CSV
data(sleepstudy, package = "lme4")
local({
  f <- file.path(SHARED, "sleepstudy.csv")
  if (!file.exists(f)) { cat("(no", f, "- sleepstudy not checked)\n"); return(invisible()) }
  csv <- read.csv(f, colClasses = "character")
  ok <- nrow(csv) == nrow(sleepstudy) && all(vapply(c("Reaction", "Days", "Subject"), function(cc) parse_same(csv[[cc]], sleepstudy[[cc]]), TRUE))
  cat("CSV", f, "matches lme4::sleepstudy row by row:", ok, "\n")
  if (!ok) stop("sleepstudy.csv differs from lme4::sleepstudy")
})

## Salamanders (glmmTMB) against tests/data/salamanders.csv (written by zero_references.R; not rewritten)
local({
  f <- file.path(OUT, "salamanders.csv")
  csv <- read.csv(f, colClasses = "character")
  ok <- nrow(csv) == nrow(Salamanders) && all(vapply(names(Salamanders), function(cc) parse_same(csv[[cc]], Salamanders[[cc]]), TRUE))
  cat("CSV", f, "matches glmmTMB::Salamanders row by row:", ok, "\n")
  if (!ok) stop("salamanders.csv differs from glmmTMB::Salamanders")
  stopifnot(identical(levels(Salamanders$spp), c("GP", "PR", "DM", "EC-A", "EC-L", "DES-L", "DF")),
            identical(levels(Salamanders$mined), c("yes", "no")))
})

## beta_sim: simulated here
BETA_SEED <- 20261203
make_beta_sim <- function() {
  set.seed(BETA_SEED)
  ng <- 40; nper <- 12; n <- ng * nper
  g <- factor(rep(sprintf("g%02d", seq_len(ng)), each = nper), levels = sprintf("g%02d", seq_len(ng)))
  x <- rnorm(n, 0, 1)
  b <- rnorm(ng, 0, 0.5)
  eta <- -0.3 + 0.6 * x + b[as.integer(g)]
  mu <- plogis(eta)
  y <- rbeta(n, mu * 15, (1 - mu) * 15)
  stopifnot(all(y > 0 & y < 1))
  data.frame(g = g, x = x, y = y)
}
beta_sim <- make_beta_sim()
beta_csv <- file.path(OUT, "beta_sim.csv")
write_csv_exact(beta_sim, beta_csv)
local({
  csv <- read.csv(beta_csv, colClasses = "character")
  ok <- nrow(csv) == nrow(beta_sim) && all(vapply(names(beta_sim), function(cc) parse_same(csv[[cc]], beta_sim[[cc]]), TRUE))
  cat("wrote", beta_csv, "(", nrow(beta_sim), "rows ); matches R's data row by row:", ok,
      "; y range", sprintf("%.6g", range(beta_sim$y)), "\n")
  if (!ok) stop("beta_sim.csv differs from R's data")
})

## ------------------------------------------------ cases

CONV_NOTE <- paste(
  "results: default glmmTMB (nlminb, rel.tol 1e-10): max |gradient| 5e-5 .. 6e-3 over these five cases, estimates",
  "up to 4e-5 from the optimum, logLik up to 3e-8 below it. tight: the same call with", TIGHT, "; nlminb then stops",
  "with 'singular convergence (7)' (convergence = 1, a glmmTMB warning) in every case and does not move at all in",
  "four of the five (salamanders_nbinom1 moves by 4e-5 but keeps max |gradient| 1.4e-4), so tight is NOT closer to",
  "the optimum in general. newton_polish: Newton steps on the same Laplace objective from the default fit",
  "(max |gradient| < 1e-8, status = converged, in all five): use it as the target for a 1e-6 comparison of",
  "estimates; its logLik is 3e-11 .. 3e-8 above results.logLik.")

SS_NOTE <- paste(
  "lme4::sleepstudy (180 rows, 18 subjects x Days 0..9), the shared CSV data/sleepstudy.csv under shared/reference",
  "(checked row by row against R's data); Subject is a factor with levels in factor_levels (R's order), used only",
  "for grouping. Reaction > 0 (Gamma response).")
SAL_NOTE <- paste(
  "glmmTMB::Salamanders (644 rows) as shipped with glmmTMB 1.1.5, i.e. tests/data/salamanders.csv (written by",
  "tests/data/r/zero_references.R; R's row order, factors as strings). Factor level orders (factor_levels) set the",
  "treatment-contrast baselines: spp = GP, PR, DM, EC-A, EC-L, DES-L, DF (baseline GP); mined = yes, no (baseline",
  "yes, so the coefficient is minedno); site (23 levels, R-1..R-12, VF-1..VF-11) is an ORDERED factor in R but is",
  "used only as a grouping factor, where that does not matter.")
BETA_NOTE <- paste(
  "Simulated in R 4.2.2 (tests/data/r/family_references.R, make_beta_sim) and written to tests/data/beta_sim.csv",
  "(doubles round-trip exact): set.seed(20261203); 40 groups g = \"g01\"..\"g40\" (factor, levels in that order)",
  "x 12 consecutive rows each (480 rows); x = rnorm(480, 0, 1); then b = rnorm(40, 0, 0.5) (0.5 is the SD), one per",
  "group; eta = -0.3 + 0.6 x + b[g]; mu = plogis(eta); y = rbeta(480, mu * 15, (1 - mu) * 15) (true phi = 15,",
  "Var = mu (1 - mu) / 16). Columns g, x, y; b, eta, mu are not stored. In Python:",
  "pandas.read_csv(\"tests/data/beta_sim.csv\").")

NB1_NOTE <- paste(
  "nbinom1: Var(y | b) = mu (1 + phi). family_params.phi = sigma(fit). Verified for glmmTMB 1.1.5: ?sigma.glmmTMB",
  "says nbinom1 'returns a dispersion parameter (usually denoted alpha as in Hardin and Hilbe (2007)): such that the",
  "variance equals mu(1+alpha)'; glmmTMB:::sigma.glmmTMB returns exp(betad) for families other than gaussian",
  "(exp(betad / 2)) and Gamma (exp(-betad / 2)); glmmTMB's nbinom1()$variance is function(mu, alpha) mu * (1 + alpha);",
  "and parameterisation_check: the fixed-effects-only glmmTMB fit's logLik equals",
  "sum(dnbinom(y, size = mu / phi, mu = mu, log = TRUE)) with phi = exp(betad) (see abs_diff).")
GAMMA_NOTE <- paste(
  "Gamma(link = \"log\"): glmmTMB 1.1.5 models the SHAPE: y | b ~ Gamma(shape = k, scale = mu / k), k = exp(betad),",
  "and sigma(fit) = exp(-betad / 2) = 1 / sqrt(k), the coefficient of variation (?sigma.glmmTMB: 'sigma is",
  "estimated as (1/sqrt(shape))'; glmmTMB:::sigma.glmmTMB). family_params: sigma = sigma(fit), shape = 1 / sigma^2",
  "(= exp(betad)). Verified by parameterisation_check (fixed-effects-only fit vs. hand-written dgamma sum).")
BETA_FAM_NOTE <- paste(
  "beta_family(link = \"logit\"): y | b ~ Beta(mu phi, (1 - mu) phi), Var = mu (1 - mu) / (1 + phi);",
  "family_params.phi = sigma(fit) = exp(betad) (?sigma.glmmTMB: 'beta returns the value of phi, where the",
  "conditional variance is mu*(1-mu)/(1+phi)'; verified by parameterisation_check).")

run_case("sleep_gamma_log", "sleepstudy", "data/sleepstudy.csv", "shared/reference", "sleepstudy",
         "Reaction ~ Days + (Days | Subject)", family = "Gamma(link = \"log\")", yname = "Reaction",
         factor_cols = "Subject", data_note = SS_NOTE, data_prep = "sleepstudy (lme4::sleepstudy)",
         notes = paste(GAMMA_NOTE, "Random effects: correlated intercept and Days slope per Subject",
                       "(results.varcorr.cond; newton_polish.re_sd.cond = [sd (Intercept), sd Days],",
                       "newton_polish.re_corr.cond the 2 x 2 correlation matrix)."))
run_case("salamanders_nbinom1", "glmmTMB::Salamanders", "salamanders.csv", "tests/data", "Salamanders",
         "count ~ spp + mined + (1 | site)", family = "nbinom1", yname = "count",
         factor_cols = c("site", "spp", "mined"), data_note = SAL_NOTE, data_prep = "Salamanders",
         notes = NB1_NOTE)
run_case("beta_sim_logit", "simulated (beta_sim)", "beta_sim.csv", "tests/data", "beta_sim",
         "y ~ x + (1 | g)", family = "beta_family(link = \"logit\")", yname = "y",
         factor_cols = "g", data_note = BETA_NOTE, data_prep = "beta_sim (tests/data/beta_sim.csv)",
         notes = BETA_FAM_NOTE)
run_case("salamanders_nbinom1_dispformula", "glmmTMB::Salamanders", "salamanders.csv", "tests/data", "Salamanders",
         "count ~ spp + mined + (1 | site)", dispformula = "~ mined", family = "nbinom1", yname = "count",
         factor_cols = c("site", "spp", "mined"), data_note = SAL_NOTE, data_prep = "Salamanders",
         notes = paste(NB1_NOTE, "dispformula = ~ mined: log(phi) = betad_(Intercept) + betad_minedno",
                       "(results.fixef.disp); sigma(fit) is NA for a non-trivial dispformula, so family_params.phi",
                       "is absent and family_params.phi_by_mined = exp(log phi) for mined = yes / no."))
run_case("sleep_gamma_dispformula", "sleepstudy", "data/sleepstudy.csv", "shared/reference", "sleepstudy",
         "Reaction ~ Days + (Days | Subject)", dispformula = "~ Days", family = "Gamma(link = \"log\")", yname = "Reaction",
         factor_cols = "Subject", data_note = SS_NOTE, data_prep = "sleepstudy (lme4::sleepstudy)",
         notes = paste(GAMMA_NOTE, "dispformula = ~ Days: in glmmTMB 1.1.5 the dispersion linear predictor is",
                       "log(SHAPE), NOT log(sigma): log(k) = betad_(Intercept) + betad_Days * Days (results.fixef.disp),",
                       "so log(sigma) = log(CV) = -(betad_(Intercept) + betad_Days * Days) / 2 and shape = 1 / sigma^2 =",
                       "exp(betad_(Intercept) + betad_Days * Days). parameterisation_check confirms this reading",
                       "(logLik_hand) and rejects log(sigma) = Xd betad (logLik_hand_if_betad_were_log_sigma).",
                       "sigma(fit) is NA for a non-trivial dispformula; family_params lists, for Days = 0..9,",
                       "log_shape_by_Days, shape_by_Days and sigma_by_Days."))

## ------------------------------------------------ summary

tmpd <- Sys.getenv("TMPDIR", "/tmp")
writeLines(NUMCHECK$pairs, file.path(tmpd, "family_numcheck.txt")); cat("number check pairs in", file.path(tmpd, "family_numcheck.txt"), "\n")
writeLines(prov, file.path(tmpd, "family_provenance_lines.md")); cat("provenance lines in", file.path(tmpd, "family_provenance_lines.md"), "\n")
tab <- do.call(rbind, results)
rownames(tab) <- NULL
options(width = 250, digits = 15)
cat("\n==== summary ====\n")
print(tab[, c("case_id", "logLik", "logLik_tight", "conv", "conv_t", "pdHess", "pdHess_t", "n_warn", "n_warn_t", "tight_maxdiff")], row.names = FALSE)
cat("\nmax |gradient| and Newton polish:\n")
print(tab[, c("case_id", "grad", "grad_t", "logLik_polish", "grad_polish", "polish_dpar", "polish_status")], row.names = FALSE)
cat("\nfamily_params (default | tight | Newton polish):\n")
for (i in seq_len(nrow(tab))) cat(sprintf("  %-32s %s | %s | polish: %s\n", tab$case_id[i], tab$family_params[i], tab$family_params_tight[i], tab$family_params_polish[i]))
cat("\nparameterisation checks (fixed-effects-only fits):\n")
for (i in seq_len(nrow(tab))) cat(sprintf("  %-32s %s\n", tab$case_id[i], tab$check[i]))
cat("\nwarnings / optimizer messages (default || tight):\n")
for (i in seq_len(nrow(tab))) cat(sprintf("  %-32s [%s] %s || [%s] %s\n", tab$case_id[i], tab$opt_msg[i], tab$warnings[i],
                                          tab$opt_msg_t[i], tab$warnings_t[i]))
if (length(failures)) { cat("\nFAILED cases:\n"); for (n in names(failures)) cat(" ", n, ":", failures[[n]], "\n") } else cat("\nno failures\n")
