## glmmTMB reference fits for zero-inflated, hurdle and zero-truncated count models (and an NB2 model
## with a dispersion formula) on glmmTMB's own Salamanders data.
##
## Run from the repository root:   Rscript tests/data/r/zero_references.R
## Writes tests/data/salamanders.csv (glmmTMB::Salamanders as used, factors as strings, doubles
## round-trip exact), tests/data/<case_id>.json (one per case) and prints a summary table. Every case
## is wrapped in tryCatch, so one failure does not stop the rest; a failed case is reported at the end
## and writes no JSON. Number formatting, CSV writer and JSON conventions are those of
## tests/data/r/weights_references.R (helpers copied, so that this script is self-contained).
##
## Each case: `results` = the default glmmTMB fit, `tight` = the same call with
## control = glmmTMBControl(optCtrl = list(iter.max = 1e4, eval.max = 1e4, rel.tol = 1e-14, x.tol = 1e-12))
## (same layout), `tight_vs_default` = the largest absolute differences between the two.
##
## Tested with R 4.2.2, glmmTMB 1.1.5, TMB 1.9.2, lme4 1.1-31, Matrix 1.5-3, jsonlite 1.8.4
## (Debian bookworm packages).

suppressPackageStartupMessages({
  library(glmmTMB)
  library(jsonlite)
})

OUT <- file.path("tests", "data")
stopifnot(dir.exists(OUT))

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

## ---------------------------------------------------------------- helpers (from weights_references.R)

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

family_params <- function(m, zi_scalar) {
  fam <- family(m)$family
  fp <- list()
  if (zi_scalar) {
    p0 <- plogis(unname(fixef(m)$zi[["(Intercept)"]]))
    if (grepl("^truncated_", fam)) fp$hu <- p0 else fp$zi <- p0
  }
  if (fam %in% c("nbinom2", "truncated_nbinom2")) {
    s <- sigma(m)
    fp$theta <- if (is.na(s)) NULL else s
    bd <- fixef(m)$disp
    if (length(bd) > 1) {
      ## dispformula = ~ mined: sigma() is NA; theta per level of mined = exp(betad_intercept + betad_minedno)
      fp$theta_by_mined <- list(yes = exp(unname(bd[["(Intercept)"]])),
                                no = exp(unname(bd[["(Intercept)"]] + bd[["minedno"]])))
    }
  }
  fp
}

## number of levels of each grouping factor as used in the fit (unused levels dropped); null if none
ngrps_of <- function(m, comp) {
  fl <- m$modelInfo$reTrms[[comp]]$flist
  if (is.null(fl) || length(fl) == 0) return(NULL)
  as.list(vapply(fl, nlevels, 1L))
}

tmb_block <- function(m, cap, elapsed, call_text, zi_scalar) {
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
    family_params = family_params(m, zi_scalar),
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

## Newton polish of the outer (Laplace) objective from the default fit's optimum: nlminb stops with
## |gradient| ~ 1e-4 .. 1e-3 and, with the tight control, reports "singular convergence (7)" without
## getting much closer, so the estimates of `results` / `tight` are ~1e-5 from the optimum. Newton steps
## use TMB's exact gradient (obj$gr) and optimHess (finite differences of obj$gr), with step halving.
## Run AFTER everything else has been extracted from m (it moves m$obj's internal state).
newton_polish <- function(m, zi_scalar, maxit = 50, gtol = 1e-8) {
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
  fam <- family(m)$family
  fp <- list()
  if (zi_scalar) { p0z <- plogis(unname(p[names(p) == "betazi"][1])); if (grepl("^truncated_", fam)) fp$hu <- p0z else fp$zi <- p0z }
  bd <- p[names(p) == "betad"]
  if (fam %in% c("nbinom2", "truncated_nbinom2")) {
    if (length(bd) == 1) fp$theta <- exp(unname(bd))
    else fp$theta_by_mined <- list(yes = exp(unname(bd[1])), no = exp(unname(bd[1] + bd[2])))
  }
  list(
    note = paste("Newton polish of the default fit (not a glmmTMB call): Newton steps on glmmTMB's own Laplace",
                 "objective m$obj (exact TMB gradient, optimHess Hessian, step halving) from m$fit$par until",
                 "max |gradient| <", gtol, "; se from TMB::sdreport(m$obj, par.fixed = par);",
                 "random-effect SDs = exp(theta) (scalar random intercepts)."),
    status = note, steps = steps,
    par = list(names = arr(names(p)), values = arr(p)),
    logLik = -f, max_abs_gradient = max(abs(g)),
    max_abs_diff_par_vs_default = max(abs(p - p0)),
    logLik_gain_vs_default = -f - (-m$fit$objective),
    fixef = fx,
    re_sd = list(cond = re_sd("theta"), zi = re_sd("thetazi")),
    family_params = fp,
    pdHess = sdr$pdHess, sdreport_warnings = arr(capS$warnings))
}

results <- list()   # case_id -> summary row
failures <- list()
prov <- character()

## Fit one case. `data_expr` is the R expression passed as `data =` (evaluated in the global env).
run_case <- function(case_id, data_expr, formula_str, ziformula = "~0", dispformula = "~1", family,
                     data_note = NULL, notes = NULL) {
  res <- tryCatch({
    d <- eval(parse(text = data_expr))
    ## argument order as in the case list: ziformula (always explicit, ~0 included), family; the
    ## dispformula case: dispformula, family, ziformula
    args <- if (dispformula != "~1")
      c(sprintf("data = %s", data_expr), sprintf("dispformula = %s", dispformula),
        sprintf("family = %s", family), sprintf("ziformula = %s", ziformula))
    else
      c(sprintf("data = %s", data_expr), sprintf("ziformula = %s", ziformula), sprintf("family = %s", family))
    call <- sprintf("glmmTMB(%s, %s)", formula_str, paste(args, collapse = ", "))
    call_t <- sub(")$", sprintf(", control = %s)", TIGHT), call)
    zi_scalar <- ziformula == "~1"
    lv <- levels_of(d, c("site", "spp", "mined"))

    t0 <- proc.time()[["elapsed"]]
    cap <- capture(eval(parse(text = call), envir = globalenv()))
    el <- proc.time()[["elapsed"]] - t0
    m <- cap$value
    t0 <- proc.time()[["elapsed"]]
    cap_t <- capture(eval(parse(text = call_t), envir = globalenv()))
    el_t <- proc.time()[["elapsed"]] - t0
    mt <- cap_t$value

    blk <- tmb_block(m, cap, el, call, zi_scalar)
    blk_t <- tmb_block(mt, cap_t, el_t, call_t, zi_scalar)
    blk_t$control <- TIGHT
    td <- tight_diff(blk, blk_t)
    pol <- tryCatch(newton_polish(m, zi_scalar), error = function(e) list(status = paste("failed:", conditionMessage(e))))

    case <- list(
      case_id = case_id, dataset = "glmmTMB::Salamanders", data_file = "salamanders.csv", data_file_root = "tests/data",
      data_note = data_note, data_prep = data_expr,
      factor_levels = lv$factor_levels, ordered_factors = lv$ordered_factors,
      nrow_data = nrow(d),
      formula = formula_str, ziformula = ziformula, dispformula = dispformula,
      family = family(m)$family, link = family(m)$link, method = "Laplace (ML)",
      notes = notes, convergence_note = CONV_NOTE,
      r_call = call, versions = versions, engine = "glmmTMB::glmmTMB",
      results = blk, tight = blk_t, tight_vs_default = td, newton_polish = pol)
    js <- toJSON(prep_json(case), digits = NA, auto_unbox = TRUE, null = "null", na = "null", pretty = TRUE, json_verbatim = TRUE)
    writeLines(js, file.path(OUT, paste0(case_id, ".json")))
    prov <<- c(prov, sprintf("- `%s`: `%s`; tight: the same with `control = %s`; R %s, glmmTMB %s, TMB %s",
                             case_id, call, TIGHT, getRversion(), versions$glmmTMB, versions$TMB))
    fp <- blk$family_params; fpt <- blk_t$family_params
    results[[case_id]] <<- data.frame(
      case_id = case_id, logLik = blk$logLik, logLik_tight = blk_t$logLik,
      conv = blk$convergence, conv_t = blk_t$convergence, pdHess = blk$pdHess, pdHess_t = blk_t$pdHess,
      n_warn = length(cap$warnings), n_warn_t = length(cap_t$warnings),
      tight_maxdiff = td$overall_max_abs_diff,
      grad = blk$max_abs_gradient, grad_t = blk_t$max_abs_gradient,
      logLik_polish = if (is.null(pol$logLik)) NA else pol$logLik, grad_polish = if (is.null(pol$max_abs_gradient)) NA else pol$max_abs_gradient,
      polish_status = pol$status, polish_dpar = if (is.null(pol$max_abs_diff_par_vs_default)) NA else pol$max_abs_diff_par_vs_default,
      family_params_polish = paste(sprintf("%s=%s", names(unlist(pol$family_params)), sprintf("%.15g", unlist(pol$family_params))), collapse = " "),
      family_params = paste(sprintf("%s=%s", names(unlist(fp)), sprintf("%.10g", unlist(fp))), collapse = " "),
      family_params_tight = paste(sprintf("%s=%s", names(unlist(fpt)), sprintf("%.10g", unlist(fpt))), collapse = " "),
      warnings = paste(unique(c(cap$warnings)), collapse = " | "),
      warnings_t = paste(unique(c(cap_t$warnings)), collapse = " | "),
      opt_msg = blk$optimizer_message, opt_msg_t = blk_t$optimizer_message)
    "ok"
  }, error = function(e) { failures[[case_id]] <<- conditionMessage(e); conditionMessage(e) })
  cat(sprintf("%-34s %s\n", case_id, res))
}

## ------------------------------------------------ data

sal_csv <- file.path(OUT, "salamanders.csv")
write_csv_exact(Salamanders, sal_csv)
cat("wrote", sal_csv, "(", nrow(Salamanders), "rows )\n")
## re-read and compare with R's data (numbers exactly, factors as strings)
local({
  csv <- read.csv(sal_csv, colClasses = "character")
  ok <- nrow(csv) == nrow(Salamanders) && all(vapply(names(Salamanders), function(cc) {
    a <- Salamanders[[cc]]; b <- csv[[cc]]
    if (is.factor(a)) all(as.character(a) == b) else all(parse_exact(b) == as.numeric(a))
  }, TRUE))
  cat("CSV matches R's data row by row:", ok, "\n")
  if (!ok) stop("salamanders.csv differs from glmmTMB::Salamanders")
})

## ------------------------------------------------ cases

SAL_NOTE <- paste(
  "glmmTMB::Salamanders (644 rows) as shipped with glmmTMB 1.1.5, written to tests/data/salamanders.csv in R's row",
  "order, factors as strings. Factor level orders (factor_levels) set the treatment-contrast baselines: spp = GP, PR, DM,",
  "EC-A, EC-L, DES-L, DF (baseline GP); mined = yes, no (baseline yes, so the coefficient is minedno); site (23 levels,",
  "R-1..R-12, VF-1..VF-11) is an ORDERED factor in R but is used only as a grouping factor, where that does not matter.")
POS_NOTE <- paste(
  "Rows with count > 0 only: subset(Salamanders, count > 0), 257 of the 644 rows, in their original order; in Python",
  "data = pandas.read_csv(\"tests/data/salamanders.csv\"); data = data[data[\"count\"] > 0] (same rows, same order).",
  "subset() keeps all factor levels (factor_levels lists them), but site VF-3 has no positive counts, so the grouping",
  "factor has 22 levels in the fit (lme4/glmmTMB drop unused grouping levels; see results.ngrps); spp and mined keep",
  "all their levels present.")
F <- "count ~ spp + mined + (1 | site)"
CONV_NOTE <- paste(
  "results: default glmmTMB (nlminb, rel.tol 1e-10): max |gradient| 1e-5 .. 2e-3, estimates ~1e-5 from the optimum,",
  "logLik 1e-8 .. 6e-8 below it. tight: the same call with", TIGHT, "; nlminb then stops with",
  "'singular convergence (7)' (convergence = 1, a glmmTMB warning) and in several cases does not move at all, so",
  "tight is NOT closer to the optimum in general. newton_polish: Newton steps on the same Laplace objective from",
  "the default fit (max |gradient| < 1e-8 where status = converged): use it as the target for a 1e-6 comparison of",
  "estimates; its logLik is 1e-8 .. 6e-8 above results.logLik.")
FULL <- "Salamanders"; POS <- "subset(Salamanders, count > 0)"

zi_note <- "zero-inflated: P(y = 0) = zi + (1 - zi) f(0); family_params.zi = plogis(zi intercept)"
hu_note <- paste("glmmTMB hurdle: truncated count family with ziformula = ~1, zi = P(y = 0) (the hurdle probability),",
                 "y > 0 from the zero-truncated distribution; family_params.hu = plogis(zi intercept)")
nb_note <- "family_params.theta = sigma(fit): the NB2 dispersion, Var(y | b) = mu + mu^2 / theta (untruncated NB)"

run_case("salamanders_zip", FULL, F, ziformula = "~1", family = "poisson", data_note = SAL_NOTE, notes = zi_note)
run_case("salamanders_zinb", FULL, F, ziformula = "~1", family = "nbinom2", data_note = SAL_NOTE,
         notes = paste(zi_note, nb_note,
                       paste("BOUNDARY: the zero-inflation probability goes to 0 (zi intercept -16 default, -22 tight,",
                             "about -23 after the Newton polish; its se is huge); the NB alone explains the zeros. Only",
                             "logLik, the cond fixed effects, theta and the site SD are well defined; compare zi as ~0."),
                       sep = "; "))
run_case("salamanders_hurdle_poisson", FULL, F, ziformula = "~1", family = "truncated_poisson", data_note = SAL_NOTE,
         notes = hu_note)
run_case("salamanders_hurdle_nb", FULL, F, ziformula = "~1", family = "truncated_nbinom2", data_note = SAL_NOTE,
         notes = paste(hu_note, nb_note, sep = "; "))
run_case("salamanders_truncated_poisson", POS, F, ziformula = "~0", family = "truncated_poisson",
         data_note = paste(SAL_NOTE, POS_NOTE),
         notes = "zero-truncated Poisson on the positive counts (no zero part)")
run_case("salamanders_truncated_nb", POS, F, ziformula = "~0", family = "truncated_nbinom2",
         data_note = paste(SAL_NOTE, POS_NOTE),
         notes = paste("zero-truncated NB2 on the positive counts (no zero part);", nb_note))
run_case("salamanders_zip_ziformula", FULL, F, ziformula = "~ spp + mined", family = "poisson", data_note = SAL_NOTE,
         notes = "zero-inflation probability logit(zi) = spp + mined (fixed effects in results.fixef.zi)")
run_case("salamanders_zinb_zi_random", FULL, F, ziformula = "~ mined + (1 | site)", family = "nbinom2",
         data_note = SAL_NOTE,
         notes = paste("zero-inflation with its own site random intercept (results.varcorr.zi, results.ranef.zi);", nb_note,
                       paste("NOT A USABLE REFERENCE in glmmTMB 1.1.5: false convergence (8), non-positive-definite Hessian,",
                             "logLik(fit) is NA (glmmTMB returns NA when pdHess is FALSE; minus_objective = -808.078 is",
                             "recorded), max |gradient| ~5e10, and the Laplace objective is discontinuous at the returned",
                             "point (a 1e-8 change in the zi intercept raises it by 0.38), i.e. the inner random-effect",
                             "optimisation lands in different modes; the tight refit and the Newton polish do not move.",
                             "Compare ziformula = ~ (1 | site) (nbinom2, objective 824.19) which converges cleanly.")))
run_case("salamanders_nb_dispformula", FULL, F, ziformula = "~0", dispformula = "~ mined", family = "nbinom2",
         data_note = SAL_NOTE,
         notes = paste("NB2 with log(theta) = betad_(Intercept) + betad_minedno (results.fixef.disp); sigma(fit) is NA",
                       "for a non-trivial dispformula, so family_params.theta is absent and",
                       "family_params.theta_by_mined = exp(log theta) for mined = yes / no"))

## ------------------------------------------------ summary

tmpd <- Sys.getenv("TMPDIR", "/tmp")
writeLines(NUMCHECK$pairs, file.path(tmpd, "zero_numcheck.txt")); cat("number check pairs in", file.path(tmpd, "zero_numcheck.txt"), "\n")
writeLines(prov, file.path(tmpd, "zero_provenance_lines.md")); cat("provenance lines in", file.path(tmpd, "zero_provenance_lines.md"), "\n")
tab <- do.call(rbind, results)
rownames(tab) <- NULL
options(width = 250, digits = 15)
cat("\n==== summary ====\n")
print(tab[, c("case_id", "logLik", "logLik_tight", "conv", "conv_t", "pdHess", "pdHess_t", "n_warn", "n_warn_t", "tight_maxdiff")], row.names = FALSE)
cat("\nmax |gradient| and Newton polish:\n")
print(tab[, c("case_id", "grad", "grad_t", "logLik_polish", "grad_polish", "polish_dpar", "polish_status")], row.names = FALSE)
cat("\nfamily_params (default | tight | Newton polish):\n")
for (i in seq_len(nrow(tab))) cat(sprintf("  %-32s %s | %s | polish: %s\n", tab$case_id[i], tab$family_params[i], tab$family_params_tight[i], tab$family_params_polish[i]))
cat("\nwarnings / optimizer messages (default || tight):\n")
for (i in seq_len(nrow(tab))) cat(sprintf("  %-32s [%s] %s || [%s] %s\n", tab$case_id[i], tab$opt_msg[i], tab$warnings[i],
                                          tab$opt_msg_t[i], tab$warnings_t[i]))
if (length(failures)) { cat("\nFAILED cases:\n"); for (n in names(failures)) cat(" ", n, ":", failures[[n]], "\n") } else cat("\nno failures\n")
