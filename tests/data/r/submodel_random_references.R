## Reference fits (Laplace ML) for models with RANDOM EFFECTS IN THE ZERO-INFLATION AND DISPERSION
## SUBMODELS.
##
## Run from the repository root:   Rscript tests/data/r/submodel_random_references.R
## (about 1 minute on 2 cores, compiling the TMB template included).
##
## Writes
##   tests/data/zi_random_sim.csv, tests/data/disp_random_sim.csv, tests/data/disp_random_sim_nb.csv
##     (simulated here, see the *_NOTE strings; doubles round-trip exact, factors as strings);
##   glmmTMB cases (zero-inflation with a random intercept; layout of zero_references.R):
##     tests/data/salamanders_zip_zi_random.json   count ~ spp + mined + (1 | site), zi ~ mined + (1 | site), poisson
##     tests/data/salamanders_zinb_zi_spp_random.json  the same, zi ~ spp + (1 | site), nbinom2
##     tests/data/zi_random_sim_zip.json           y ~ x + (1 | g), zi ~ x + (1 | g), poisson
##     tests/data/zi_random_sim_hurdle_poisson.json  the same with family = truncated_poisson (hurdle)
##   TMB cases (dispersion with a random intercept; glmmTMB 1.1.5 refuses random effects in dispformula,
##   "no random effects allowed in dispersion term", so these use the template tests/data/r/disp_random.cpp):
##     tests/data/disp_random_sim_gaussian.json    y ~ x + (1 | g), log(sigma) ~ z + (1 | g), gaussian
##     tests/data/disp_random_sim_nbinom2.json     y ~ x + (1 | g), log(theta) ~ z + (1 | g), nbinom2
## and prints a summary table. Every case is wrapped in tryCatch, so one failure does not stop the rest; a
## failed case is reported at the end and writes no JSON.
##
## glmmTMB cases: `results` = the default glmmTMB fit, `tight` = the same call with
## control = glmmTMBControl(optCtrl = list(iter.max = 1e4, eval.max = 1e4, rel.tol = 1e-14, x.tol = 1e-12)),
## `tight_vs_default`, and `newton_polish` = Newton steps on glmmTMB's own Laplace objective (m$obj) from
## m$fit$par until max |gradient| < 1e-8 (helpers, number formatting and JSON layout copied from
## zero_references.R / family_references.R, so that this script is self-contained). New here:
## newton_polish.ranef (conditional modes and SDs at the polished parameters, for cond and zi),
## `smoothness_check` (central differences of the Laplace objective against TMB's gradient at the polished
## optimum, and the eigenvalues of the Hessian: the earlier salamanders_zinb_zi_random attempt had a
## discontinuous objective) and `restart_check` (nlminb + polish from a perturbed start lands on the same
## optimum).
##
## TMB cases: `results` = the optimum after nlminb AND the Newton polish (the reference values), `nlminb` =
## nlminb's own stop, `newton_polish` (same layout as for glmmTMB), `template_check` = the template with
## the dispersion random effect left out (disp_re = 0) against glmmTMB(y ~ x + (1 | g), dispformula = ~ z)
## on the same data: logLik at the two polished optima, and the template's objective at glmmTMB's polished
## parameters (mapped to the template's parameterisation), must agree to 1e-8.
##
## Tested with R 4.2.2, glmmTMB 1.1.5, TMB 1.9.2, lme4 1.1-31, Matrix 1.5-3, jsonlite 1.8.4
## (Debian bookworm packages), g++ 12.

suppressPackageStartupMessages({
  library(glmmTMB)
  library(TMB)
  library(jsonlite)
})

OUT <- file.path("tests", "data")
stopifnot(dir.exists(OUT))
TEMPLATE <- file.path("tests", "data", "r", "disp_random.cpp")
stopifnot(file.exists(TEMPLATE))

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
GTOL <- 1e-8       # Newton polish: stop when max |gradient| < GTOL

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
write_json_case <- function(case, case_id) {
  js <- toJSON(prep_json(case), digits = NA, auto_unbox = TRUE, null = "null", na = "null", pretty = TRUE, json_verbatim = TRUE)
  writeLines(js, file.path(OUT, paste0(case_id, ".json")))
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
parse_same <- function(csv_col, a) if (is.factor(a) || is.character(a)) all(as.character(a) == csv_col) else all(parse_exact(csv_col) == as.numeric(a))

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

## number of levels of each grouping factor as used in the fit (unused levels dropped); null if none
ngrps_of <- function(m, comp) {
  fl <- m$modelInfo$reTrms[[comp]]$flist
  if (is.null(fl) || length(fl) == 0) return(NULL)
  as.list(vapply(fl, nlevels, 1L))
}

## family parameters of the glmmTMB cases here: none (poisson / truncated_poisson, ziformula with
## covariates, so there is no single zi probability); kept as an (empty) object for the common layout.
family_params <- function(m) setNames(list(), character(0))

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
    family_params = family_params(m),
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

## ---------------------------------------------------------------- Newton polish (shared by both engines)

## Newton steps on a TMB Laplace objective (fn, gr = obj$fn, obj$gr: exact TMB gradient; Hessian by
## optimHess = finite differences of gr) with step halving, from p0 until max |gradient| < gtol.
newton_loop <- function(fn, gr, p0, maxit = 50, gtol = GTOL) {
  p <- p0; f <- fn(p); steps <- 0; status <- "converged"
  for (i in seq_len(maxit)) {
    g <- as.vector(gr(p))
    if (!all(is.finite(g))) { status <- "non-finite gradient"; break }
    if (max(abs(g)) < gtol) break
    H <- optimHess(p, fn, gr)
    dlt <- tryCatch(solve(H, g), error = function(e) NULL)
    if (is.null(dlt)) { status <- "singular Hessian"; break }
    lam <- 1; ok <- FALSE
    for (k in 1:30) {
      pn <- p - lam * dlt; fnew <- fn(pn)
      if (is.finite(fnew) && fnew <= f + 1e-12) { ok <- TRUE; break }
      lam <- lam / 2
    }
    if (!ok) { status <- "no descent step found"; break }
    p <- pn; f <- fnew; steps <- i
    if (i == maxit) status <- "iteration limit"
  }
  f <- fn(p); g <- as.vector(gr(p))
  if (status == "converged" && max(abs(g)) >= gtol) status <- "gradient above tolerance"
  list(par = p, f = f, grad = g, steps = steps, status = status)
}

## Smoothness of the Laplace objective at p: central differences (step h) against TMB's gradient, and the
## eigenvalues of the (optimHess) Hessian. A discontinuous objective (the inner mode search jumping between
## modes, as in salamanders_zinb_zi_random) shows up as a central difference far from the gradient.
smoothness_check <- function(fn, gr, p, h = 1e-5) {
  g <- as.vector(gr(p))
  cd <- vapply(seq_along(p), function(k) { e <- replace(numeric(length(p)), k, h); (fn(p + e) - fn(p - e)) / (2 * h) }, 0)
  H <- optimHess(p, fn, gr)
  ev <- eigen((H + t(H)) / 2, symmetric = TRUE, only.values = TRUE)$values
  fn(p)   # leave the object's inner state at p
  list(h = h, gradient = arr(g), central_difference = arr(cd),
       max_abs_central_difference_minus_gradient = max(abs(cd - g)),
       hessian_eigenvalues = arr(ev), hessian_min_eigenvalue = min(ev),
       hessian_asymmetry = max(abs(H - t(H))),
       note = paste("central differences (f(p + h e_k) - f(p - h e_k)) / 2h of the Laplace objective against TMB's",
                    "gradient at the polished optimum (a smooth objective gives differences ~h^2, here <= 1e-6);",
                    "hessian_eigenvalues of the optimHess Hessian of the objective (all > 0: a strict local minimum)."))
}

## ---------------------------------------------------------------- glmmTMB cases

## Newton polish of the default glmmTMB fit (as zero_references.R), plus the conditional modes / SDs of
## both components at the polished parameters (TMB::sdreport(m$obj, par.fixed = par): par.random,
## diag.cov.random, i.e. glmmTMB's own ranef(condVar = TRUE) definition). Run AFTER everything else has
## been extracted from m (it moves m$obj's internal state).
glmm_newton_polish <- function(m) {
  obj <- m$obj; p0 <- m$fit$par
  nl <- newton_loop(obj$fn, obj$gr, p0)
  p <- nl$par
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
  re_sd <- function(nm) { th <- p[names(p) == nm]; if (length(th) == 1) exp(unname(th)) else if (length(th)) NA_real_ else NULL }
  log_sd_se <- function(nm) { i <- which(names(p) == nm); if (length(i) == 1) unname(se[i]) else NULL }
  ## random effects at p: b (cond) and bzi (zi), one scalar intercept per level of the single grouping factor
  rnd <- sdr$par.random; rsd <- sqrt(sdr$diag.cov.random)
  re_at <- function(nm, comp) {
    idx <- which(names(rnd) == nm)
    if (length(idx) == 0) return(NULL)
    fl <- m$modelInfo$reTrms[[comp]]$flist
    stopifnot(length(fl) == 1, length(idx) == nlevels(fl[[1]]))
    out <- list()
    out[[names(fl)[1]]] <- list(levels = arr(levels(fl[[1]])), terms = arr("(Intercept)"),
                                condval = list(`(Intercept)` = arr(rnd[idx])),
                                condsd = list(`(Intercept)` = arr(rsd[idx])))
    out
  }
  list(
    note = paste("Newton polish of the default fit (not a glmmTMB call): Newton steps on glmmTMB's own Laplace",
                 "objective m$obj (exact TMB gradient, optimHess Hessian, step halving) from m$fit$par until",
                 "max |gradient| <", GTOL, "; se from TMB::sdreport(m$obj, par.fixed = par);",
                 "re_sd = exp(theta), exp(thetazi) (scalar random intercepts), log_sd_se = their se on the log scale;",
                 "ranef = conditional modes (condval) and sqrt(diag.cov.random) (condsd, which includes the",
                 "fixed-effect uncertainty, as glmmTMB's ranef(condVar = TRUE)) from that sdreport at the polished par."),
    status = nl$status, steps = nl$steps,
    par = list(names = arr(names(p)), values = arr(p)),
    logLik = -nl$f, max_abs_gradient = max(abs(nl$grad)),
    max_abs_diff_par_vs_default = max(abs(p - p0)),
    logLik_gain_vs_default = -nl$f - (-m$fit$objective),
    fixef = fx,
    re_sd = list(cond = re_sd("theta"), zi = re_sd("thetazi")),
    log_sd_se = list(cond = log_sd_se("theta"), zi = log_sd_se("thetazi")),
    family_params = setNames(list(), character(0)),
    ranef = list(cond = re_at("b", "cond"), zi = re_at("bzi", "zi")),
    pdHess = sdr$pdHess, sdreport_warnings = arr(capS$warnings))
}

## From a perturbed start (polished par + 0.3 * alternating signs), nlminb then the Newton polish: does the
## fit land on the same optimum? (A guard against a second mode / a discontinuous objective.)
restart_check <- function(obj, p_ref, f_ref) {
  p0 <- p_ref + 0.3 * rep_len(c(1, -1), length(p_ref))
  opt <- suppressWarnings(nlminb(p0, obj$fn, obj$gr, control = list(iter.max = 1000, eval.max = 1000)))
  nl <- newton_loop(obj$fn, obj$gr, opt$par)
  obj$fn(p_ref)
  list(start = list(names = arr(names(p0)), values = arr(p0)),
       nlminb_message = opt$message, polish_status = nl$status,
       logLik = -nl$f, logLik_minus_reference = -nl$f - (-f_ref),
       max_abs_par_diff_vs_reference = max(abs(nl$par - p_ref)),
       max_abs_gradient = max(abs(nl$grad)),
       note = "nlminb from the polished optimum + 0.3 * (1, -1, 1, ...), then the same Newton polish")
}

results <- list()   # case_id -> summary row
failures <- list()
prov <- character()

## Fit one glmmTMB case. `data_expr` is the R expression passed as `data =` (evaluated in the global env).
run_glmmTMB_case <- function(case_id, dataset, data_file, data_expr, formula_str, ziformula, family,
                             factor_cols, data_note, data_prep = data_expr, notes = NULL, convergence_note = NULL,
                             extra = NULL) {
  res <- tryCatch({
    d <- eval(parse(text = data_expr))
    args <- c(sprintf("data = %s", data_expr), sprintf("ziformula = %s", ziformula), sprintf("family = %s", family))
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
    pol <- tryCatch(glmm_newton_polish(m), error = function(e) list(status = paste("failed:", conditionMessage(e))))
    sm <- tryCatch({ pp <- pol$par$values; names(pp) <- pol$par$names; smoothness_check(m$obj$fn, m$obj$gr, pp) },
                   error = function(e) list(error = conditionMessage(e)))
    rc <- tryCatch({ pp <- pol$par$values; names(pp) <- pol$par$names; restart_check(m$obj, pp, -pol$logLik) },
                   error = function(e) list(error = conditionMessage(e)))

    case <- list(
      case_id = case_id, dataset = dataset, data_file = data_file, data_file_root = "tests/data",
      data_note = data_note, data_prep = data_prep,
      factor_levels = lv$factor_levels, ordered_factors = lv$ordered_factors,
      nrow_data = nrow(d),
      formula = formula_str, ziformula = ziformula, dispformula = "~1",
      family = family(m)$family, link = family(m)$link, method = "Laplace (ML)",
      notes = notes, convergence_note = convergence_note,
      r_call = call, versions = versions, engine = "glmmTMB::glmmTMB",
      results = blk, tight = blk_t, tight_vs_default = td, newton_polish = pol,
      smoothness_check = sm, restart_check = rc)
    case <- c(case, extra)
    write_json_case(case, case_id)
    prov <<- c(prov, sprintf("- `%s`: `%s`; tight: the same with `control = %s`; R %s, glmmTMB %s, TMB %s, lme4 %s, Matrix %s",
                             case_id, call, TIGHT, getRversion(), versions$glmmTMB, versions$TMB,
                             utils::packageDescription("lme4")$Version, utils::packageDescription("Matrix")$Version))
    results[[case_id]] <<- data.frame(
      case_id = case_id, engine = "glmmTMB", logLik = blk$logLik, logLik_tight = blk_t$logLik,
      conv = blk$convergence, pdHess = blk$pdHess, n_warn = length(cap$warnings),
      tight_maxdiff = td$overall_max_abs_diff, grad = blk$max_abs_gradient,
      logLik_polish = if (is.null(pol$logLik)) NA else pol$logLik,
      grad_polish = if (is.null(pol$max_abs_gradient)) NA else pol$max_abs_gradient,
      pdHess_polish = if (is.null(pol$pdHess)) NA else pol$pdHess,
      polish_status = pol$status, polish_dpar = if (is.null(pol$max_abs_diff_par_vs_default)) NA else pol$max_abs_diff_par_vs_default,
      sd_cond = if (is.null(pol$re_sd$cond)) NA else pol$re_sd$cond, sd_other = if (is.null(pol$re_sd$zi)) NA else pol$re_sd$zi,
      smooth = if (is.null(sm$max_abs_central_difference_minus_gradient)) NA else sm$max_abs_central_difference_minus_gradient,
      min_eig = if (is.null(sm$hessian_min_eigenvalue)) NA else sm$hessian_min_eigenvalue,
      restart_dll = if (is.null(rc$logLik_minus_reference)) NA else rc$logLik_minus_reference,
      restart_dpar = if (is.null(rc$max_abs_par_diff_vs_reference)) NA else rc$max_abs_par_diff_vs_reference,
      warnings = paste(unique(c(cap$warnings, cap_t$warnings)), collapse = " | "),
      opt_msg = blk$optimizer_message)
    "ok"
  }, error = function(e) { failures[[case_id]] <<- conditionMessage(e); conditionMessage(e) })
  cat(sprintf("%-34s %s\n", case_id, res))
}

## ---------------------------------------------------------------- TMB template (dispersion random effect)

TEMPLATE_MODEL <- paste(
  "TMB template tests/data/r/disp_random.cpp (MakeADFun(random = c(\"u\", \"b\")), Laplace approximation):",
  "u_g ~ N(0, sd_u^2) and b_g ~ N(0, sd_b^2) independent, one of each per level g of the grouping factor;",
  "eta_i = X_i beta + u_g(i) with X = model.matrix(~ x) (columns \"(Intercept)\", \"x\");",
  "etad_i = Xd_i betad + b_g(i) with Xd = model.matrix(~ z) (columns \"(Intercept)\", \"z\").",
  "gaussian: y_i | u, b ~ N(eta_i, sigma_i^2), log(sigma_i) = etad_i (betad on the log-SD scale; glmmTMB 1.1.5's",
  "own gaussian betad is log(sigma^2) = 2 log(sigma)).",
  "nbinom2: y_i | u, b ~ NB2 with mean mu_i = exp(eta_i) and size theta_i, log(theta_i) = etad_i,",
  "Var(y_i | u, b) = mu_i + mu_i^2 / theta_i (TMB dnbinom_robust(y, log mu, 2 log mu - log theta), as glmmTMB's nbinom2).",
  "The objective is -log p(y, u, b) with all normalising constants (dnorm / dnbinom log densities of y, u and b);",
  "obj$fn is its Laplace approximation over (u, b), so logLik = -obj$fn(par) at the optimum is the Laplace",
  "log marginal likelihood, comparable with glmmTMB's logLik. Parameters: beta, betad, log_sd_u, log_sd_b;",
  "random: u, b (natural scale, not standardised; the Laplace value does not depend on that linear choice).")

compile_template <- function() {
  td <- tempfile("disp_random_tmb"); dir.create(td)
  cpp <- file.path(td, "disp_random.cpp")
  file.copy(TEMPLATE, cpp)
  capC <- capture(utils::capture.output(rc <- TMB::compile(cpp, flags = "-O2")))
  stopifnot(rc == 0)
  dyn.load(TMB::dynlib(sub("\\.cpp$", "", cpp)))
  list(dir = td, log = capC$value)
}

## Build the TMB objective. disp_re = 0 maps b and log_sd_b off (the glmmTMB-comparable model).
make_obj <- function(d, family_code, disp_re) {
  X <- model.matrix(~ x, d); Xd <- model.matrix(~ z, d); G <- nlevels(d$g)
  dat <- list(y = as.numeric(d$y), X = X, Xd = Xd, g = as.integer(d$g) - 1L,
              family = as.integer(family_code), disp_re = as.integer(disp_re))
  par <- list(beta = numeric(ncol(X)), betad = numeric(ncol(Xd)), log_sd_u = 0, log_sd_b = 0,
              u = numeric(G), b = numeric(G))
  if (family_code == 0) par$beta[1] <- mean(d$y) else par$beta[1] <- log(mean(d$y))
  map <- if (disp_re == 1) list() else list(b = factor(rep(NA, G)), log_sd_b = factor(NA))
  obj <- MakeADFun(dat, par, random = if (disp_re == 1) c("u", "b") else "u", map = map,
                   DLL = "disp_random", silent = TRUE)
  list(obj = obj, X = X, Xd = Xd)
}

## nlminb + Newton polish of the template's objective; everything a JSON `results` block needs.
fit_template <- function(d, family_code, disp_re) {
  mo <- make_obj(d, family_code, disp_re); obj <- mo$obj
  t0 <- proc.time()[["elapsed"]]
  capO <- capture(nlminb(obj$par, obj$fn, obj$gr, control = list(iter.max = 1000, eval.max = 1000)))
  opt <- capO$value
  g_opt <- as.vector(obj$gr(opt$par))
  nl <- newton_loop(obj$fn, obj$gr, opt$par)
  el <- proc.time()[["elapsed"]] - t0
  p <- nl$par
  capS <- capture(TMB::sdreport(obj, par.fixed = p)); sdr <- capS$value
  V <- sdr$cov.fixed; se <- suppressWarnings(sqrt(diag(V)))
  nm <- names(p)
  blockfe <- function(parname, cn) {
    idx <- which(nm == parname); stopifnot(length(idx) == length(cn))
    list(names = arr(cn), estimate = arr(p[idx]), se = arr(se[idx]), vcov = mat(V[idx, idx, drop = FALSE]))
  }
  fx <- list(cond = blockfe("beta", colnames(mo$X)), zi = NULL, disp = blockfe("betad", colnames(mo$Xd)))
  adr <- summary(sdr, "report")
  vc1 <- function(parname, adname) {
    i <- which(nm == parname); if (length(i) == 0) return(NULL)
    s <- exp(unname(p[i]))
    list(list(group = "g", terms = arr("(Intercept)"), sd = arr(s), var = arr(s^2), corr = mat(1), cov = mat(s^2),
              log_sd = unname(p[i]), log_sd_se = unname(se[i]), sd_se_delta = unname(adr[adname, "Std. Error"])))
  }
  levs <- levels(d$g)
  rnd <- sdr$par.random; rsd <- sqrt(sdr$diag.cov.random)
  re1 <- function(rn) {
    idx <- which(names(rnd) == rn); if (length(idx) == 0) return(NULL)
    stopifnot(length(idx) == length(levs))
    list(g = list(levels = arr(levs), terms = arr("(Intercept)"),
                  condval = list(`(Intercept)` = arr(rnd[idx])), condsd = list(`(Intercept)` = arr(rsd[idx]))))
  }
  ll <- -nl$f; df <- length(p); n <- nrow(d)
  list(obj = obj, opt = opt, nl = nl, sdr = sdr, p = p, se = se,
       block = list(
         fixef = fx,
         varcorr = list(cond = vc1("log_sd_u", "sd_u"), zi = NULL, disp = vc1("log_sd_b", "sd_b")),
         logLik = ll, logLik_df = df, minus2logLik = -2 * ll, AIC = -2 * ll + 2 * df, BIC = -2 * ll + log(n) * df,
         nobs = n, ngrps = list(cond = list(g = nlevels(d$g)), zi = NULL, disp = if (disp_re == 1) list(g = nlevels(d$g)) else NULL),
         family_params = if (family_code == 0) list(sigma_at_z0_b0 = exp(unname(p[nm == "betad"][1])))
                         else list(theta_at_z0_b0 = exp(unname(p[nm == "betad"][1]))),
         par = list(names = arr(nm), values = arr(p)),
         objective = nl$f, minus_objective = -nl$f,
         pdHess = sdr$pdHess, max_abs_gradient = max(abs(nl$grad)),
         polish_status = nl$status,
         sdreport_warnings = arr(capS$warnings),
         ranef = list(cond = re1("u"), zi = NULL, disp = re1("b")),
         fit_time_s = el),
       nlminb = list(par = list(names = arr(names(opt$par)), values = arr(opt$par)),
                     objective = opt$objective, logLik = -opt$objective, convergence = opt$convergence,
                     message = opt$message, iterations = opt$iterations, evaluations = as.list(opt$evaluations),
                     max_abs_gradient = max(abs(g_opt)), warnings = arr(capO$warnings)))
}

## Template check: the template with disp_re = 0 against glmmTMB(y ~ x + (1 | g), dispformula = ~ z) on the
## same data (both Newton-polished), and the template's objective at glmmTMB's polished parameters
## (gaussian: template betad = glmmTMB betad / 2, since glmmTMB 1.1.5's gaussian betad is log(sigma^2)).
template_check <- function(d, data_expr, family_code) {
  fam_str <- if (family_code == 0) "gaussian" else "nbinom2"
  call <- sprintf("glmmTMB(y ~ x + (1 | g), data = %s, dispformula = ~ z, family = %s)", data_expr, fam_str)
  cap <- capture(eval(parse(text = call), envir = globalenv())); m <- cap$value
  ll_default <- as.numeric(logLik(m))
  nlg <- newton_loop(m$obj$fn, m$obj$gr, m$fit$par)
  pg <- nlg$par
  ft <- fit_template(d, family_code, disp_re = 0)
  pt <- ft$p
  ## glmmTMB par (beta, betad, theta) -> template par (beta, betad, log_sd_u)
  scale_d <- if (family_code == 0) 0.5 else 1
  pg_mapped <- c(pg[names(pg) == "beta"], scale_d * pg[names(pg) == "betad"], pg[names(pg) == "theta"])
  stopifnot(length(pg_mapped) == length(pt))
  names(pg_mapped) <- names(pt)
  f_at_g <- ft$obj$fn(pg_mapped)
  ft$obj$fn(pt)
  out <- list(
    purpose = paste("The template (tests/data/r/disp_random.cpp) with the dispersion random effect left out",
                    "(disp_re = 0: b and log_sd_b mapped off, random = \"u\") is glmmTMB's model",
                    "y ~ x + (1 | g), dispformula = ~ z; both are fitted to the same data and Newton-polished",
                    "(max |gradient| < 1e-8). logLik_abs_diff compares the two polished optima;",
                    "objective_at_glmmTMB_par_abs_diff evaluates the template's objective at glmmTMB's polished",
                    "parameters mapped to the template's parameterisation",
                    if (family_code == 0) "(template betad = glmmTMB betad / 2: glmmTMB 1.1.5's gaussian betad is log(sigma^2), the template's is log(sigma))"
                    else "(identical parameterisation: betad = log(theta))",
                    "and compares it with glmmTMB's -logLik there. Both must be < 1e-8."),
    glmmTMB_r_call = call, glmmTMB_fit_warnings = arr(cap$warnings),
    glmmTMB_logLik_default = ll_default,
    glmmTMB_polish_status = nlg$status, glmmTMB_max_abs_gradient = max(abs(nlg$grad)),
    glmmTMB_logLik = -nlg$f,
    glmmTMB_par = list(names = arr(names(pg)), values = arr(pg)),
    template_r_call = sprintf("MakeADFun(data = list(y, X = model.matrix(~ x, %s), Xd = model.matrix(~ z, %s), g = as.integer(g) - 1, family = %d, disp_re = 0), map = list(b = factor(rep(NA, G)), log_sd_b = factor(NA)), random = \"u\", DLL = \"disp_random\"); nlminb, then Newton polish",
                              data_expr, data_expr, family_code),
    template_polish_status = ft$nl$status, template_max_abs_gradient = max(abs(ft$nl$grad)),
    template_logLik = -ft$nl$f,
    template_par = list(names = arr(names(pt)), values = arr(pt)),
    logLik_abs_diff = abs(-ft$nl$f - (-nlg$f)),
    objective_at_glmmTMB_par_abs_diff = abs(f_at_g - nlg$f),
    max_abs_par_diff = max(abs(pt - pg_mapped)),
    results_without_disp_re = ft$block)
  out$agrees <- out$logLik_abs_diff < 1e-8 && out$objective_at_glmmTMB_par_abs_diff < 1e-8
  out
}

## Fit one TMB case (dispersion random effect) and write its JSON.
run_tmb_case <- function(case_id, d, data_expr, data_file, family_code, data_note, truth, notes) {
  res <- tryCatch({
    fam <- if (family_code == 0) "gaussian" else "nbinom2"
    lv <- levels_of(d, "g")
    ## glmmTMB's answer to the same model, verbatim
    gcall <- sprintf("glmmTMB(y ~ x + (1 | g), data = %s, dispformula = ~ z + (1 | g), family = %s)", data_expr, fam)
    gerr <- tryCatch({ eval(parse(text = gcall), envir = globalenv()); "no error (unexpected)" },
                     error = function(e) conditionMessage(e))
    ft <- fit_template(d, family_code, disp_re = 1)
    sm <- smoothness_check(ft$obj$fn, ft$obj$gr, ft$p)
    rc <- restart_check(ft$obj, ft$p, ft$nl$f)
    tc <- template_check(d, data_expr, family_code)
    nlp <- ft$nl; p <- ft$p
    pol <- list(
      note = paste("Newton steps on the template's Laplace objective (exact TMB gradient, optimHess Hessian, step",
                   "halving) from nlminb's stop until max |gradient| <", GTOL, "; results holds the same values",
                   "(with vcov and ranef); this block mirrors the glmmTMB files' newton_polish layout."),
      status = nlp$status, steps = nlp$steps,
      par = list(names = arr(names(p)), values = arr(p)),
      logLik = -nlp$f, max_abs_gradient = max(abs(nlp$grad)),
      max_abs_diff_par_vs_default = max(abs(p - ft$opt$par)),
      logLik_gain_vs_default = -nlp$f - (-ft$opt$objective),
      fixef = lapply(ft$block$fixef, function(b) if (is.null(b)) NULL else b[c("names", "estimate", "se")]),
      re_sd = list(cond = as.numeric(ft$block$varcorr$cond[[1]]$sd), zi = NULL, disp = as.numeric(ft$block$varcorr$disp[[1]]$sd)),
      pdHess = ft$sdr$pdHess)
    r_call <- paste(
      sprintf("TMB::compile(\"%s\"); MakeADFun(data = list(y = %s$y, X = model.matrix(~ x, %s), Xd = model.matrix(~ z, %s),",
              TEMPLATE, data_expr, data_expr, data_expr),
      sprintf("g = as.integer(%s$g) - 1, family = %d, disp_re = 1), parameters = list(beta = c(%s, 0), betad = c(0, 0),",
              data_expr, family_code, if (family_code == 0) "mean(y)" else "log(mean(y))"),
      "log_sd_u = 0, log_sd_b = 0, u = rep(0, G), b = rep(0, G)), random = c(\"u\", \"b\"), DLL = \"disp_random\");",
      "nlminb(obj$par, obj$fn, obj$gr, control = list(iter.max = 1000, eval.max = 1000)); then Newton polish",
      sprintf("(max |gradient| < %g); TMB::sdreport(obj, par.fixed = par)", GTOL))
    case <- list(
      case_id = case_id, dataset = sprintf("simulated (%s)", data_expr), data_file = data_file,
      data_file_root = "tests/data", data_note = data_note,
      data_prep = sprintf("%s <- read.csv(\"tests/data/%s\"); %s$g <- factor(%s$g)  (levels in factor_levels)",
                          data_expr, data_file, data_expr, data_expr),
      factor_levels = lv$factor_levels, ordered_factors = lv$ordered_factors,
      nrow_data = nrow(d),
      formula = "y ~ x + (1 | g)", ziformula = "~0", dispformula = "~ z + (1 | g)",
      family = fam, link = if (family_code == 0) "identity" else "log",
      dispersion_parameter = if (family_code == 0) "log(sigma) = Xd betad + b_g (sigma = residual SD)"
                             else "log(theta) = Xd betad + b_g (NB2 size; Var = mu + mu^2 / theta)",
      method = "Laplace (ML)",
      notes = notes, template = list(file = TEMPLATE, md5 = unname(tools::md5sum(TEMPLATE)), model = TEMPLATE_MODEL),
      convergence_note = paste(
        "results = nlminb (from beta = (", if (family_code == 0) "mean(y)" else "log(mean(y))", ", 0), everything",
        "else 0) followed by Newton steps to max |gradient| < 1e-8 (results.polish_status); nlminb's own stop is in",
        "`nlminb`. se = sqrt(diag(sdreport(obj, par.fixed = par)$cov.fixed)); varcorr sd = exp(log_sd) with",
        "log_sd_se (log scale) and sd_se_delta (ADREPORT, delta method); ranef condval = conditional modes of u",
        "(cond) and b (disp) at the optimum, condsd = sqrt(diag.cov.random) (includes the fixed-effect",
        "uncertainty, as glmmTMB's ranef(condVar = TRUE)). The Laplace objective is reproducible to ~1e-9 (TMB's",
        "inner mode search tolerance; see restart_check), so compare logLik to ~1e-8, not tighter."),
      truth = truth,
      r_call = r_call, versions = versions, engine = "TMB::MakeADFun (tests/data/r/disp_random.cpp)",
      glmmTMB_attempt = list(r_call = gcall, error = gerr,
                             note = "glmmTMB 1.1.5 rejects a random effect in dispformula; hence the TMB template"),
      results = ft$block, nlminb = ft$nlminb, newton_polish = pol,
      smoothness_check = sm, restart_check = rc, template_check = tc,
      logLik_gain_from_disp_re = ft$block$logLik - tc$template_logLik)
    write_json_case(case, case_id)
    prov <<- c(prov, sprintf(
      "- `%s`: TMB, `tests/data/r/disp_random.cpp` (%s; log(%s) = b0 + b1 z + b_g), `MakeADFun(random = c(\"u\", \"b\"))` + nlminb + Newton polish to max |gradient| < 1e-8, on `tests/data/%s`; template_check against `%s`; glmmTMB itself: `%s` fails with \"%s\"; R %s, TMB %s, glmmTMB %s",
      case_id, fam, if (family_code == 0) "sigma" else "theta", data_file, tc$glmmTMB_r_call, gcall, gerr,
      getRversion(), versions$TMB, versions$glmmTMB))
    results[[case_id]] <<- data.frame(
      case_id = case_id, engine = "TMB", logLik = ft$opt$objective * -1, logLik_tight = NA,
      conv = ft$opt$convergence, pdHess = ft$sdr$pdHess, n_warn = length(ft$nlminb$warnings),
      tight_maxdiff = NA, grad = ft$nlminb$max_abs_gradient,
      logLik_polish = ft$block$logLik, grad_polish = ft$block$max_abs_gradient, pdHess_polish = ft$sdr$pdHess,
      polish_status = ft$nl$status, polish_dpar = pol$max_abs_diff_par_vs_default,
      sd_cond = pol$re_sd$cond, sd_other = pol$re_sd$disp,
      smooth = sm$max_abs_central_difference_minus_gradient, min_eig = sm$hessian_min_eigenvalue,
      restart_dll = rc$logLik_minus_reference, restart_dpar = rc$max_abs_par_diff_vs_reference,
      warnings = sprintf("template_check: logLik diff %.3g, objective-at-glmmTMB-par diff %.3g, agrees %s; glmmTMB error: %s",
                         tc$logLik_abs_diff, tc$objective_at_glmmTMB_par_abs_diff, tc$agrees, gerr),
      opt_msg = ft$opt$message)
    "ok"
  }, error = function(e) { failures[[case_id]] <<- conditionMessage(e); conditionMessage(e) })
  cat(sprintf("%-34s %s\n", case_id, res))
}

## ---------------------------------------------------------------- data

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

write_and_check <- function(df, name) {
  f <- file.path(OUT, name)
  write_csv_exact(df, f)
  csv <- read.csv(f, colClasses = "character")
  ok <- identical(names(csv), names(df)) && nrow(csv) == nrow(df) &&
    all(vapply(names(df), function(cc) parse_same(csv[[cc]], df[[cc]]), TRUE))
  cat("wrote", f, "(", nrow(df), "rows,", file.size(f), "bytes ); matches R's data row by row:", ok, "\n")
  if (!ok) stop(name, " differs from R's data")
  stopifnot(file.size(f) < 150 * 1024)
}
glevels <- function(ng) sprintf("g%02d", seq_len(ng))

## zi_random_sim: zero-inflated Poisson with random intercepts in both the count and the zi part
ZI_SEED <- 20261211
make_zi_sim <- function() {
  set.seed(ZI_SEED)
  ng <- 60; nper <- 25; n <- ng * nper
  g <- factor(rep(glevels(ng), each = nper), levels = glevels(ng))
  x <- round(rnorm(n), 3)
  u <- rnorm(ng, 0, 0.5)     # count-part random intercepts, SD 0.5
  v <- rnorm(ng, 0, 0.8)     # zi-part random intercepts, SD 0.8
  mu <- exp(1.0 + 0.5 * x + u[as.integer(g)])
  zi <- plogis(-0.5 + 0.7 * x + v[as.integer(g)])
  y <- ifelse(runif(n) < zi, 0L, rpois(n, mu))
  data.frame(y = as.integer(y), x = x, g = g)
}
zi_random_sim <- make_zi_sim()
write_and_check(zi_random_sim, "zi_random_sim.csv")
ZI_NOTE <- paste(
  "Simulated in R 4.2.2 (tests/data/r/submodel_random_references.R, make_zi_sim) and written to",
  "tests/data/zi_random_sim.csv: set.seed(20261211); 60 groups g = \"g01\"..\"g60\" (factor, levels in that order)",
  "x 25 consecutive rows each (1500 rows); x = round(rnorm(1500), 3); u = rnorm(60, 0, 0.5) (count-part group",
  "intercepts, SD 0.5); v = rnorm(60, 0, 0.8) (zi-part group intercepts, SD 0.8); mu = exp(1 + 0.5 x + u[g]);",
  "zi = plogis(-0.5 + 0.7 x + v[g]); y = ifelse(runif(1500) < zi, 0, rpois(1500, mu)) (vectorised in that order).",
  sprintf("%d of 1500 y are 0 (%.1f%%), mean y %.4g.", sum(zi_random_sim$y == 0), 100 * mean(zi_random_sim$y == 0), mean(zi_random_sim$y)),
  "Columns y, x, g; u, v, mu, zi are not stored. In Python: pandas.read_csv(\"tests/data/zi_random_sim.csv\").")
ZI_TRUTH <- list(cond = list(`(Intercept)` = 1.0, x = 0.5, sd_g = 0.5), zi = list(`(Intercept)` = -0.5, x = 0.7, sd_g = 0.8),
                 note = "simulation values (the data-generating ZIP model), not estimates")

## disp_random_sim: gaussian LMM with a group random intercept in log(sigma)
DG_SEED <- 20261212
make_disp_gauss <- function() {
  set.seed(DG_SEED)
  ng <- 40; nper <- 30; n <- ng * nper
  g <- factor(rep(glevels(ng), each = nper), levels = glevels(ng))
  x <- round(rnorm(n), 3); z <- round(rnorm(n), 3)
  u <- rnorm(ng, 0, 1.0)     # mean random intercepts, SD 1
  b <- rnorm(ng, 0, 0.5)     # log-sigma random intercepts, SD 0.5
  y <- round(rnorm(n, 2 + 1.5 * x + u[as.integer(g)], exp(-0.2 + 0.4 * z + b[as.integer(g)])), 4)
  data.frame(y = y, x = x, z = z, g = g)
}
disp_random_sim <- make_disp_gauss()
write_and_check(disp_random_sim, "disp_random_sim.csv")
DG_NOTE <- paste(
  "Simulated in R 4.2.2 (tests/data/r/submodel_random_references.R, make_disp_gauss) and written to",
  "tests/data/disp_random_sim.csv: set.seed(20261212); 40 groups g = \"g01\"..\"g40\" (factor, levels in that order)",
  "x 30 consecutive rows each (1200 rows); x = round(rnorm(1200), 3); z = round(rnorm(1200), 3); u = rnorm(40, 0, 1)",
  "(mean group intercepts, SD 1); b = rnorm(40, 0, 0.5) (log-sigma group intercepts, SD 0.5);",
  "y = round(rnorm(1200, 2 + 1.5 x + u[g], exp(-0.2 + 0.4 z + b[g])), 4). Columns y, x, z, g; u, b not stored.",
  "In Python: pandas.read_csv(\"tests/data/disp_random_sim.csv\").")
DG_TRUTH <- list(cond = list(`(Intercept)` = 2, x = 1.5, sd_g = 1), disp = list(`(Intercept)` = -0.2, z = 0.4, sd_g = 0.5),
                 note = "simulation values (log-sigma scale for disp), not estimates; y is rounded to 4 decimals")

## disp_random_sim_nb: NB2 counts with a group random intercept in log(theta)
DN_SEED <- 20261213
make_disp_nb <- function() {
  set.seed(DN_SEED)
  ng <- 40; nper <- 40; n <- ng * nper
  g <- factor(rep(glevels(ng), each = nper), levels = glevels(ng))
  x <- round(rnorm(n), 3); z <- round(rnorm(n), 3)
  u <- rnorm(ng, 0, 0.4)     # log-mean random intercepts, SD 0.4
  b <- rnorm(ng, 0, 0.5)     # log-theta random intercepts, SD 0.5
  mu <- exp(1.5 + 0.5 * x + u[as.integer(g)]); th <- exp(0.5 + 0.5 * z + b[as.integer(g)])
  y <- rnbinom(n, size = th, mu = mu)
  data.frame(y = as.integer(y), x = x, z = z, g = g)
}
disp_random_sim_nb <- make_disp_nb()
write_and_check(disp_random_sim_nb, "disp_random_sim_nb.csv")
DN_NOTE <- paste(
  "Simulated in R 4.2.2 (tests/data/r/submodel_random_references.R, make_disp_nb) and written to",
  "tests/data/disp_random_sim_nb.csv: set.seed(20261213); 40 groups g = \"g01\"..\"g40\" (factor, levels in that",
  "order) x 40 consecutive rows each (1600 rows); x = round(rnorm(1600), 3); z = round(rnorm(1600), 3);",
  "u = rnorm(40, 0, 0.4) (log-mean group intercepts, SD 0.4); b = rnorm(40, 0, 0.5) (log-theta group intercepts,",
  "SD 0.5); mu = exp(1.5 + 0.5 x + u[g]); theta = exp(0.5 + 0.5 z + b[g]); y = rnbinom(1600, size = theta, mu = mu).",
  sprintf("Mean y %.4g, %d zeros, max %d.", mean(disp_random_sim_nb$y), sum(disp_random_sim_nb$y == 0), max(disp_random_sim_nb$y)),
  "Columns y, x, z, g; u, b, mu, theta not stored. In Python: pandas.read_csv(\"tests/data/disp_random_sim_nb.csv\").")
DN_TRUTH <- list(cond = list(`(Intercept)` = 1.5, x = 0.5, sd_g = 0.4), disp = list(`(Intercept)` = 0.5, z = 0.5, sd_g = 0.5),
                 note = "simulation values (log-theta scale for disp), not estimates")

## ---------------------------------------------------------------- glmmTMB cases (zi random effects)

SAL_NOTE <- paste(
  "glmmTMB::Salamanders (644 rows) as shipped with glmmTMB 1.1.5, i.e. tests/data/salamanders.csv (written by",
  "tests/data/r/zero_references.R; R's row order, factors as strings; checked row by row here, not rewritten).",
  "Factor level orders (factor_levels) set the treatment-contrast baselines: spp = GP, PR, DM, EC-A, EC-L, DES-L,",
  "DF (baseline GP); mined = yes, no (baseline yes, so the coefficient is minedno); site (23 levels, R-1..R-12,",
  "VF-1..VF-11) is an ORDERED factor in R but is used only as a grouping factor, where that does not matter.")
ZI_RE_NOTE <- paste(
  "zero-inflated Poisson: P(y = 0) = zi + (1 - zi) exp(-mu), P(y = k > 0) = (1 - zi) dpois(k, mu), with",
  "log(mu) = X beta + b_site (cond) and logit(zi) = Xzi betazi + bzi_site (zi); b and bzi are independent",
  "N(0, sd^2) site intercepts with their own SDs (results.varcorr.cond / results.varcorr.zi; glmmTMB theta /",
  "thetazi = log SD). Conditional modes: results.ranef.cond / results.ranef.zi (default fit) and",
  "newton_polish.ranef (at the polished optimum).")
HU_RE_NOTE <- paste(
  "glmmTMB hurdle: family truncated_poisson with a ziformula: logit P(y = 0) = Xzi betazi + bzi_g (zi = the",
  "hurdle probability, NOT a mixing weight), and y > 0 from the zero-truncated Poisson with log(mu) = X beta + b_g,",
  "P(y = k > 0) = (1 - zi) dpois(k, mu) / (1 - exp(-mu)). The two parts share no parameters, so the Laplace",
  "log-likelihood is the sum of a binomial GLMM (zero vs positive) and a zero-truncated Poisson GLMM on y > 0.",
  "The data are simulated from a ZIP (zi_random_sim_zip), so the hurdle zi SD is not the simulation's 0.8.")

CONV_NOTE_G <- paste(
  "results: default glmmTMB (nlminb, rel.tol 1e-10); tight: the same with", TIGHT, "(may stop with 'singular",
  "convergence (7)' and not move, as in zero_references.R); newton_polish: Newton steps on the same Laplace",
  "objective from the default fit to max |gradient| < 1e-8 (status = converged): use it as the target for 1e-6",
  "comparisons of estimates. smoothness_check and restart_check (see the script header) confirm a smooth objective",
  "and a single optimum near the reported one. The Laplace objective itself is reproducible to ~1e-9 (TMB's inner",
  "mode search tolerance: a restart lands within ~1e-9 in logLik and ~1e-10 in the parameters), so compare",
  "logLik to ~1e-8, not tighter.")

## 1. Salamanders ZIP with a site random intercept in the zero-inflation part (the model requested);
##    converges cleanly (pdHess TRUE, gradient 3e-4 before the polish), unlike the nbinom2 version
##    salamanders_zinb_zi_random.json (false convergence) from zero_references.R.
run_glmmTMB_case("salamanders_zip_zi_random", "glmmTMB::Salamanders", "salamanders.csv", "Salamanders",
                 "count ~ spp + mined + (1 | site)", ziformula = "~ mined + (1 | site)", family = "poisson",
                 factor_cols = c("site", "spp", "mined"), data_note = SAL_NOTE, data_prep = "Salamanders",
                 notes = paste(ZI_RE_NOTE,
                               "Poisson version of salamanders_zinb_zi_random (nbinom2, which is not usable: false",
                               "convergence); this one converges (results.pdHess, smoothness_check, restart_check)."),
                 convergence_note = CONV_NOTE_G)

## 1b. Salamanders ZINB with species in the zero-inflation part and its own site random intercept: the
##     Laplace deviance has more than one local optimum here (a start with little zero inflation settles
##     where the zeros are the mean's), so it guards the optimiser's start and restarts.
run_glmmTMB_case("salamanders_zinb_zi_spp_random", "glmmTMB::Salamanders", "salamanders.csv", "Salamanders",
                 "count ~ spp + mined + (1 | site)", ziformula = "~ spp + (1 | site)", family = "nbinom2",
                 factor_cols = c("site", "spp", "mined"), data_note = SAL_NOTE, data_prep = "Salamanders",
                 notes = paste(ZI_RE_NOTE,
                               "nbinom2 with zi ~ spp + (1 | site): converges cleanly (unlike zi ~ mined + (1 | site));",
                               "the Laplace deviance has other local optima (e.g. -2 logLik 1627.30 with the count",
                               "part's site SD at 0), so the fit's start matters."),
                 convergence_note = CONV_NOTE_G)

## 2. simulated ZIP (zi SD 0.8) and the hurdle Poisson on the same data
run_glmmTMB_case("zi_random_sim_zip", "simulated (zi_random_sim)", "zi_random_sim.csv", "zi_random_sim",
                 "y ~ x + (1 | g)", ziformula = "~ x + (1 | g)", family = "poisson",
                 factor_cols = "g", data_note = ZI_NOTE,
                 data_prep = "zi_random_sim <- read.csv(\"tests/data/zi_random_sim.csv\"); zi_random_sim$g <- factor(zi_random_sim$g)",
                 notes = ZI_RE_NOTE, convergence_note = CONV_NOTE_G, extra = list(truth = ZI_TRUTH))
## Hurdle decomposition: the hurdle Laplace logLik must equal the sum of the two independent parts, a
## binomial GLMM for the zeros and a zero-truncated Poisson GLMM on the positive counts (each Newton-polished).
hurdle_decomposition <- function() {
  zr <- zi_random_sim; zr$zero <- as.integer(zr$y == 0)
  assign("zi_random_sim_z", zr, envir = globalenv())
  assign("zi_random_sim_pos", subset(zi_random_sim, y > 0), envir = globalenv())
  c1 <- "glmmTMB(zero ~ x + (1 | g), data = zi_random_sim_z, family = binomial)"
  c2 <- "glmmTMB(y ~ x + (1 | g), data = zi_random_sim_pos, family = truncated_poisson)"
  c3 <- "glmmTMB(y ~ x + (1 | g), data = zi_random_sim, ziformula = ~ x + (1 | g), family = truncated_poisson)"
  fits <- lapply(c(c1, c2, c3), function(cl) { m <- eval(parse(text = cl), envir = globalenv()); nl <- newton_loop(m$obj$fn, m$obj$gr, m$fit$par); list(m = m, nl = nl) })
  ll <- vapply(fits, function(f) -f$nl$f, 0)
  p3 <- fits[[3]]$nl$par
  list(note = paste("hurdle logLik (polished) against binomial logLik (zero = (y == 0), polished) + zero-truncated",
                    "Poisson logLik on y > 0 (polished); the hurdle's zi part should equal the binomial fit and its",
                    "cond part the truncated fit. zi_random_sim_z = zi_random_sim with zero = as.integer(y == 0);",
                    "zi_random_sim_pos = subset(zi_random_sim, y > 0) (",
                    sum(zi_random_sim$y > 0), "rows; every group keeps positive counts:",
                    nlevels(droplevels(zi_random_sim_pos$g)), "groups)."),
       r_calls = arr(c(c1, c2, c3)),
       logLik_binomial = ll[1], logLik_truncated = ll[2], logLik_hurdle = ll[3],
       abs_diff = abs(ll[3] - ll[1] - ll[2]),
       max_abs_par_diff_zi_vs_binomial = max(abs(c(p3[names(p3) == "betazi"], p3[names(p3) == "thetazi"]) -
                                               c(fits[[1]]$nl$par[names(fits[[1]]$nl$par) == "beta"], fits[[1]]$nl$par[names(fits[[1]]$nl$par) == "theta"]))),
       max_abs_par_diff_cond_vs_truncated = max(abs(c(p3[names(p3) == "beta"], p3[names(p3) == "theta"]) -
                                                  c(fits[[2]]$nl$par[names(fits[[2]]$nl$par) == "beta"], fits[[2]]$nl$par[names(fits[[2]]$nl$par) == "theta"]))),
       max_abs_gradients = arr(vapply(fits, function(f) max(abs(f$nl$grad)), 0)))
}
HURDLE_DECOMP <- tryCatch(hurdle_decomposition(), error = function(e) list(error = conditionMessage(e)))
cat("hurdle decomposition: |hurdle - (binomial + truncated)| =", format(HURDLE_DECOMP$abs_diff), "\n")

run_glmmTMB_case("zi_random_sim_hurdle_poisson", "simulated (zi_random_sim)", "zi_random_sim.csv", "zi_random_sim",
                 "y ~ x + (1 | g)", ziformula = "~ x + (1 | g)", family = "truncated_poisson",
                 factor_cols = "g", data_note = ZI_NOTE,
                 data_prep = "zi_random_sim <- read.csv(\"tests/data/zi_random_sim.csv\"); zi_random_sim$g <- factor(zi_random_sim$g)",
                 notes = HU_RE_NOTE, convergence_note = CONV_NOTE_G,
                 extra = list(truth = c(ZI_TRUTH[c("cond")], list(note = paste(
                   "count-part simulation values only (the zero part was simulated as ZIP zero-inflation,",
                   "so the hurdle zi part has no true value here)"))),
                              decomposition_check = HURDLE_DECOMP))


## ---------------------------------------------------------------- TMB cases (dispersion random effects)

cat("compiling", TEMPLATE, "...\n")
COMPILED <- compile_template()
DISP_COMMON <- paste(
  "Dispersion submodel with a random intercept: glmmTMB 1.1.5 rejects it (glmmTMB_attempt.error), so the fit",
  "uses the TMB template described in template.model. Names: fixef.cond = (Intercept), x (model.matrix(~ x));",
  "fixef.disp = (Intercept), z (model.matrix(~ z)); varcorr.cond / varcorr.disp = the SDs of u_g / b_g;",
  "ranef.cond / ranef.disp = conditional modes of u_g / b_g. template_check: the same template WITHOUT b against",
  "glmmTMB (dispformula = ~ z); template_check.results_without_disp_re is a second reference (that simpler model).",
  "logLik_gain_from_disp_re = results.logLik - template_check.template_logLik.")
run_tmb_case("disp_random_sim_gaussian", disp_random_sim, "disp_random_sim", "disp_random_sim.csv", 0,
             data_note = DG_NOTE, truth = DG_TRUTH,
             notes = paste(DISP_COMMON, "gaussian: y | u, b ~ N(X beta + u_g, sigma^2) with log(sigma) = Xd betad + b_g",
                           "(log-SD scale; glmmTMB's own gaussian betad would be 2 x these)."))
run_tmb_case("disp_random_sim_nbinom2", disp_random_sim_nb, "disp_random_sim_nb", "disp_random_sim_nb.csv", 1,
             data_note = DN_NOTE, truth = DN_TRUTH,
             notes = paste(DISP_COMMON, "nbinom2: y | u, b ~ NB(mu, theta), log(mu) = X beta + u_g,",
                           "log(theta) = Xd betad + b_g, Var = mu + mu^2 / theta (glmmTMB's nbinom2 parameterisation)."))

## ---------------------------------------------------------------- summary

tmpd <- Sys.getenv("TMPDIR", "/tmp")
writeLines(NUMCHECK$pairs, file.path(tmpd, "submodel_numcheck.txt")); cat("number check pairs in", file.path(tmpd, "submodel_numcheck.txt"), "\n")
writeLines(prov, file.path(tmpd, "submodel_provenance_lines.md")); cat("provenance lines in", file.path(tmpd, "submodel_provenance_lines.md"), "\n")
if (length(results)) {
  tab <- do.call(rbind, results)
  rownames(tab) <- NULL
  options(width = 250, digits = 15)
  cat("\n==== summary ====\n")
  print(tab[, c("case_id", "engine", "logLik", "logLik_tight", "conv", "pdHess", "n_warn", "tight_maxdiff", "grad")], row.names = FALSE)
  cat("\nNewton polish (the reference optimum):\n")
  print(tab[, c("case_id", "logLik_polish", "grad_polish", "pdHess_polish", "polish_status", "polish_dpar", "sd_cond", "sd_other")], row.names = FALSE)
  cat("\nsmoothness / restart checks:\n")
  print(tab[, c("case_id", "smooth", "min_eig", "restart_dll", "restart_dpar")], row.names = FALSE)
  cat("\nwarnings / messages:\n")
  for (i in seq_len(nrow(tab))) cat(sprintf("  %-32s [%s] %s\n", tab$case_id[i], tab$opt_msg[i], tab$warnings[i]))
}
if (length(failures)) { cat("\nFAILED cases:\n"); for (n in names(failures)) cat(" ", n, ":", failures[[n]], "\n") } else cat("\nno failures\n")
