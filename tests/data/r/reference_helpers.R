## Helpers shared by the R scripts that write the reference data under tests/data/ (exact number formatting,
## JSON and CSV writers, capture of warnings and messages, the start and end of a script, the parts of lme4 /
## gamm4 / glmmTMB fit summaries that several scripts write alike, lme4's modular lmer / glmer bodies, the Newton
## polish of a glmmTMB fit).
##
## The scripts are run from the repository root and source this file relative to it:
##     source(file.path("tests", "data", "r", "reference_helpers.R"))
## Sourcing it defines functions and constants only (no packages attached, no random numbers drawn; start_script
## attaches the script's packages when called); parse_exact / write_json_file call jsonlite by its namespace. Used
## by kr_references.R, glmm_profile_references.R, structured_references.R, distance_references.R,
## rr_toep_references.R, matern_references.R, r2_count_references.R, smooth_references.R, smooth_by_references.R,
## known_cov_references.R and mm_references.R (the older scripts still carry their own copies). A script that
## defines a function of the same name after sourcing it (r2_count_references.R's `named`) uses its own.
##
## Conventions:
##  - every double is written as the shortest of %.15g / %.16g / %.17g that reads back to the same double with a
##    correctly rounded parser (jsonlite's yajl -> C strtod, as Python's float()); jsonlite 1.8.4 alone stops at 15
##    significant digits even with digits = NA, which does not always round-trip. In JSON, NA / NaN / Inf -> null;
##  - arr(x): always a JSON array, even of length 0 or 1; mat(x): a JSON array of rows; a length-1 double that is
##    neither arr() nor a matrix is a JSON scalar;
##  - CSV: doubles as the shortest decimal that both strtod and R's own parser (read.csv) read back exactly,
##    character / factor columns quoted, numbers not, no row names; the file is read back and compared value by value.
##
## Tested with R 4.2.2, jsonlite 1.8.4 (Debian bookworm packages).

## ---------------------------------------------------------------- script start

## Attach `packages` (in that order, without their startup messages) and return the folder the outputs go to,
## tests/data (relative: the scripts run from the repository root; stops elsewhere).
start_script <- function(packages) {
  suppressPackageStartupMessages(for (p in packages) library(p, character.only = TRUE))
  out <- file.path("tests", "data")
  stopifnot(dir.exists(out))
  out
}

## ASLR off: unless the environment variable env_var is set, re-run this Rscript under `setarch -R` (address-space
## layout randomisation off for that process only) with env_var = "off", and quit with its exit status; where
## `setarch -R` is not permitted, say so and go on with env_var = "unavailable". env_var = "keep" (set by the user)
## runs the script as it is. Returns list(env_var, state = env_var's value). Call it first: what comes before it
## runs twice.
aslr_off <- function(env_var) {
  set_state <- function(v) do.call(Sys.setenv, stats::setNames(list(v), env_var))
  if (Sys.getenv(env_var) == "") {
    script_arg <- sub("^--file=", "", grep("^--file=", commandArgs(trailingOnly = FALSE), value = TRUE))
    can_setarch <- length(script_arg) == 1 && nzchar(Sys.which("setarch")) &&
      identical(suppressWarnings(system2("setarch", c("-R", "true"), stdout = FALSE, stderr = FALSE)), 0L)
    if (can_setarch) {
      set_state("off")
      status <- system2("setarch", c("-R", shQuote(file.path(R.home("bin"), "Rscript")), shQuote(script_arg)))
      quit(save = "no", status = status)
    }
    message("setarch -R not available: running with ASLR on (results may differ slightly between runs)")
    set_state("unavailable")
  }
  list(env_var = env_var, state = Sys.getenv(env_var))
}
## The JSON's words for aslr_off's result.
aslr_words <- function(aslr) switch(aslr$state, off = "disabled (the script re-ran itself under setarch -R)",
                                    keep = sprintf("enabled (%s=keep)", aslr$env_var),
                                    unavailable = "enabled (setarch -R not available)", aslr$state)

## The value of expr, or list(error = <its message>) if it fails.
or_error <- function(expr) tryCatch(expr, error = function(e) list(error = conditionMessage(e)))

## cases with part = fun(case_id) added to each of those named in ids that is there (or_error: an error recorded).
add_to_cases <- function(cases, ids, part, fun) {
  for (cid in intersect(ids, names(cases))) cases[[cid]][[part]] <- or_error(fun(cid))
  cases
}

## ---------------------------------------------------------------- JSON arrays

arr <- function(x) { if (is.null(x)) x <- character(0); I(unname(as.vector(x))) }  # always a JSON array
mat <- function(x) { x <- as.matrix(x); dimnames(x) <- NULL; x }                    # a matrix, as an array of rows
by_rows <- function(M) { M <- as.matrix(M); lapply(seq_len(nrow(M)), function(i) arr(M[i, ])) }  # list of row arrays
named <- function(v) list(names = arr(names(v)), values = arr(unname(v)))             # a named vector's names and values

## ---------------------------------------------------------------- exact number formatting

## Round trip checked with jsonlite's parser (yajl -> C strtod, correctly rounded, as Python's float()),
## NOT with as.numeric(), which is not always correctly rounded.
parse_exact <- function(s) {
  if (length(s) == 0) return(numeric(0))
  as.numeric(jsonlite::fromJSON(paste0("[", paste(s, collapse = ","), "]")))
}
## shortest of %.15g / %.16g / %.17g that round-trips (also through R's as.numeric when also_r_parser);
## non-finite values: "NA" for NA / NaN, sprintf's "Inf" / "-Inf" otherwise (json_num turns them all into null)
fmt_num <- function(x, also_r_parser = FALSE) {
  s <- sprintf("%.15g", x)
  fin <- is.finite(x)
  for (dg in c(16, 17)) {
    bad <- rep(FALSE, length(x))
    bad[fin] <- parse_exact(s[fin]) != x[fin]
    if (also_r_parser) bad[fin] <- bad[fin] | (as.numeric(s[fin]) != x[fin])
    s[bad] <- sprintf(paste0("%.", dg, "g"), x[bad])
  }
  stopifnot(all(parse_exact(s[fin]) == x[fin]))
  s[is.na(x)] <- "NA"
  s
}

## ---------------------------------------------------------------- JSON

## Every double is pre-formatted (fmt_num, NA / NaN / Inf -> null) and passed to toJSON verbatim
## (json_verbatim = TRUE). Each finite number written is also kept as "<written> <%.17g>" in NUMCHECK$pairs,
## for an independent check of the round trip (r2_count_references.R writes them out on request).
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
write_json_file <- function(out, file) {
  js <- jsonlite::toJSON(prep_json(out), digits = NA, auto_unbox = TRUE, null = "null", na = "null", pretty = TRUE,
                         json_verbatim = TRUE)
  writeLines(js, file)
}

## ---------------------------------------------------------------- CSV

## The CSV text of a data frame (lines, and the quoted columns): factors as their labels, doubles as fmt_num(x,
## also_r_parser = TRUE).
csv_text <- function(df) {
  out <- df
  for (nm in names(out)) {
    if (is.factor(out[[nm]])) out[[nm]] <- as.character(out[[nm]])
    else if (is.double(out[[nm]])) out[[nm]] <- fmt_num(out[[nm]], also_r_parser = TRUE)
  }
  q <- which(vapply(df, function(v) is.factor(v) || is.character(v), TRUE))
  tc <- textConnection("csv_lines", "w", local = TRUE)
  write.csv(out, tc, row.names = FALSE, quote = q)
  close(tc)
  list(lines = csv_lines, quote = q)
}
## value-by-value (==) comparison of a CSV with a data frame: the same column names and rows, labels identical,
## numbers equal as read by strtod and by R's parser
csv_matches <- function(df, path) {
  back <- read.csv(path, colClasses = "character")
  if (!identical(names(back), names(df)) || nrow(back) != nrow(df)) return(FALSE)
  all(vapply(names(df), function(nm) {
    a <- df[[nm]]; b <- back[[nm]]
    if (is.factor(a) || is.character(a)) identical(as.character(a), b)
    else isTRUE(all(parse_exact(b) == a)) && isTRUE(all(as.numeric(b) == a))
  }, TRUE))
}
write_csv_exact <- function(df, path) {
  writeLines(csv_text(df)$lines, path)
  stopifnot(csv_matches(df, path))
  invisible(path)
}

## ---------------------------------------------------------------- warnings and messages

## The value of expr with all its warnings and messages (muffled, kept in order). catch_errors: an error becomes
## the value, structure(list(error = message), class = "captured_error"), instead of stopping; trim_messages:
## drop the newline that message() appends.
capture <- function(expr, catch_errors = FALSE, trim_messages = FALSE) {
  w <- character(); msg <- character()
  val <- withCallingHandlers(
    if (catch_errors) tryCatch(expr, error = function(e) structure(list(error = conditionMessage(e)),
                                                                   class = "captured_error"))
    else expr,
    warning = function(c) { w <<- c(w, conditionMessage(c)); invokeRestart("muffleWarning") },
    message = function(c) {
      m <- conditionMessage(c); if (trim_messages) m <- sub("\n$", "", m)
      msg <<- c(msg, m); invokeRestart("muffleMessage")
    })
  list(value = val, warnings = w, messages = msg)
}

## ---------------------------------------------------------------- glmmTMB: Newton polish

## Newton polish of a glmmTMB fit's outer objective from its optimum (exact TMB gradient, optimHess, step halving).
## Run AFTER everything else has been extracted from m (it moves m$obj's internal state).
## term_summary(th, reS): the script's list of per-term summaries from the polished theta (reS =
## m$modelInfo$reStruc$condReStruc); maps: the note's words on how they are derived.
newton_polish <- function(m, term_summary, maps, maxit = 50, gtol = 1e-8) {
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
  terms <- term_summary(unname(p[names(p) == "theta"]), m$modelInfo$reStruc$condReStruc)
  ## fixed effects at the polished point: ML -> par; REML -> the random-effect mode (last.par) of beta
  lp <- obj$env$last.par
  beta <- if (any(names(p) == "beta")) unname(p[names(p) == "beta"]) else unname(lp[names(lp) == "beta"])
  bd <- p[names(p) == "betad"]
  list(
    note = paste("Newton polish (not a glmmTMB call): Newton steps on the fit's own objective m$obj from",
                 "m$fit$par until max |gradient| <", gtol, ";", maps,
                 "fixef = beta at the polished point (REML: the conditional mode of beta)."),
    status = note, steps = steps,
    par = list(names = arr(names(p)), values = arr(p)),
    logLik = -f, max_abs_gradient = max(abs(g)),
    max_abs_diff_par_vs_fit = max(abs(p - p0)), logLik_gain_vs_fit = -f - (-m$fit$objective),
    fixef = arr(beta), sigma = if (family(m)$family == "gaussian" && length(bd) == 1) exp(unname(bd) / 2) else NULL,
    varcorr = terms)
}

## ---------------------------------------------------------------- glmmTMB: versions, refit, fit summaries
## Shared by structured_references.R, distance_references.R, rr_toep_references.R and matern_references.R. tmb_block
## calls the script's own tmb_varcorr(m, th) and gls_check(m) (looked up when called), which write the
## structure-specific parts.

## Package versions recorded in the JSON; extra: named entries placed after TMB (after the TMB version glmmTMB was
## built with, glmmTMB_built_with_TMB, when built_with).
glmmtmb_versions <- function(extra = list(), built_with = FALSE) c(
  list(R = R.version.string,
       glmmTMB = as.character(packageVersion("glmmTMB")),
       TMB = as.character(packageVersion("TMB"))),
  if (built_with) list(glmmTMB_built_with_TMB = trimws(readLines(system.file("TMB-version", package = "glmmTMB"))[1])),
  extra,
  list(Matrix = as.character(packageVersion("Matrix")),
       jsonlite = as.character(packageVersion("jsonlite")),
       source = "Debian bookworm packages (r-base-core, r-cran-*)"))

## The same for the scripts whose fits are lme4's (gamm4's too); extra: named entries placed after R.
lme4_versions <- function(extra = list()) c(
  list(R = R.version.string),
  extra,
  list(lme4 = as.character(packageVersion("lme4")),
       Matrix = as.character(packageVersion("Matrix")),
       minqa = as.character(packageVersion("minqa")),
       nloptr = as.character(packageVersion("nloptr")),
       jsonlite = as.character(packageVersion("jsonlite")),
       source = "Debian bookworm packages (r-base-core, r-cran-*)"))
## gamm4's: mgcv and gamm4 after R.
gamm4_versions <- function() lme4_versions(list(mgcv = as.character(packageVersion("mgcv")),
                                                gamm4 = as.character(packageVersion("gamm4"))))

## glmmTMB 1.1.5's blockCode -> the covariance structure's name.
BLOCK_NAMES <- c("0" = "diag", "1" = "us", "2" = "cs", "3" = "ar1", "4" = "ou", "5" = "exp", "6" = "gau",
                 "7" = "mat", "8" = "toep")

## The conditional model's random-effect terms (reS = m$modelInfo$reStruc$condReStruc) with their slices of th (all
## terms' theta in order): one(label, term, name, thi, k) for each term, label its name in reS, name its structure's
## name, thi its theta and k the indices of its first levels shown (at most `shown`). Returns one()'s values.
tmb_terms <- function(th, reS, one, shown = 4) {
  out <- list(); pos <- 0
  for (i in seq_along(reS)) {
    term <- reS[[i]]; nt <- term$blockNumTheta
    thi <- th[pos + seq_len(nt)]; pos <- pos + nt
    out[[i]] <- one(names(reS)[i], term, BLOCK_NAMES[[as.character(term$blockCode)]], thi,
                    seq_len(min(shown, term$blockSize)))
  }
  out
}

REFIT_CONTROL <- "glmmTMBControl(optCtrl = list(iter.max = 1e4, eval.max = 1e4))"

## A warned fit, kept for the record (with_par: also its parameter vector).
warned_fit <- function(m, cap, call_text, with_par = FALSE) {
  out <- list(r_call = call_text, warnings = arr(cap$warnings),
              logLik = as.numeric(logLik(m)), convergence = m$fit$convergence,
              optimizer_message = m$fit$message, pdHess = m$sdr$pdHess,
              max_abs_gradient = max(abs(m$sdr$gradient.fixed)))
  if (with_par) out$par <- list(names = arr(names(m$fit$par)), values = arr(m$fit$par))
  out
}

## Fit call_text with glmmTMB's default control; if that warns, refit with control = REFIT_CONTROL.
## Returns the reference fit m, its capture cap, used_call, control_used and default_warn (NULL when clean).
fit_with_refit <- function(call_text, with_par = FALSE) {
  cap <- capture(eval(parse(text = call_text), envir = globalenv()))
  m <- cap$value
  control_used <- "default"; default_warn <- NULL; used_call <- call_text
  if (length(cap$warnings)) {
    default_warn <- warned_fit(m, cap, call_text, with_par)
    used_call <- sub(")$", sprintf(", control = %s)", REFIT_CONTROL), call_text)
    cap <- capture(eval(parse(text = used_call), envir = globalenv()))
    m <- cap$value; control_used <- REFIT_CONTROL
  }
  list(m = m, cap = cap, used_call = used_call, control_used = control_used, default_warn = default_warn)
}

## Cov(b) of the conditional model: blockdiag over terms of kronecker(I_reps, VarCorr term matrix).
tmb_cov_b <- function(m) {
  vc <- VarCorr(m)$cond; reS <- m$modelInfo$reStruc$condReStruc
  blocks <- lapply(seq_along(vc), function(i) kronecker(diag(reS[[i]]$blockReps), as.matrix(vc[[i]])))
  as.matrix(Matrix::bdiag(blocks))
}

## Gaussian: GLS fixed effects and (X' V^-1 X)^-1 at the fitted covariance, V = Z S Z' + sigma^2 I (S = Cov(b));
## loglik: also the ML / restricted log-likelihood computed directly from the marginal MVN (ML: log N(y; X
## beta_hat, V); REML: that - 1/2 log|X'V^-1X| + (p/2) log(2 pi)). note: NULL for the default note.
tmb_gls <- function(m, S, loglik = TRUE, note = NULL) {
  Z <- as.matrix(getME(m, "Z")); X <- as.matrix(getME(m, "X")); y <- model.response(model.frame(m))
  stopifnot(ncol(Z) == ncol(S))
  V <- Z %*% S %*% t(Z) + sigma(m)^2 * diag(nrow(Z))
  if (loglik) cV <- chol(V)
  ViX <- solve(V, X); XtViX <- crossprod(X, ViX)
  bh <- solve(XtViX, crossprod(ViX, y)); Vb <- solve(XtViX)
  fe <- fixef(m)$cond
  out <- list(estimate = arr(bh), se = arr(sqrt(diag(Vb))), vcov = mat(Vb),
              max_abs_diff_estimate_vs_fixef = max(abs(bh - fe)),
              max_abs_diff_se_vs_vcov = max(abs(sqrt(diag(Vb)) - sqrt(diag(as.matrix(vcov(m)$cond))))))
  if (loglik) {
    r <- y - X %*% bh
    ll_ml <- -0.5 * (nrow(X) * log(2 * pi) + 2 * sum(log(diag(cV))) + sum(backsolve(cV, r, transpose = TRUE)^2))
    ll_reml <- ll_ml - 0.5 * as.numeric(determinant(XtViX)$modulus) + 0.5 * ncol(X) * log(2 * pi)
    ll_direct <- if (isTRUE(m$modelInfo$REML)) ll_reml else ll_ml
    out$logLik_direct <- ll_direct
    out$logLik_direct_minus_glmmTMB <- ll_direct - as.numeric(logLik(m))
  }
  out$note <- if (!is.null(note)) note else
    paste("GLS at the fitted covariance parameters: se = sqrt(diag((X' V^-1 X)^-1)), the lme4-style",
          "fixed-effect se (fixef.se is glmmTMB's sdreport vcov). logLik_direct: the",
          if (isTRUE(m$modelInfo$REML)) "restricted" else "ML",
          "log-likelihood computed directly from the marginal MVN (see the script).")
  out
}

## The summary of a glmmTMB fit (the JSON `results`). vc_print: NULL (no VarCorr_print entry) or a function of m
## giving VarCorr_print.
tmb_block <- function(m, cap, call_text, vc_print = NULL) {
  ll <- logLik(m)
  capV <- capture(vcov(m)); V <- as.matrix(capV$value$cond)
  fe <- fixef(m)$cond
  stopifnot(identical(colnames(V), names(fe)))
  th <- getME(m, "theta")
  th_par <- unname(m$fit$par[names(m$fit$par) == "theta"])
  stopifnot(isTRUE(all.equal(unname(th), th_par, tolerance = 0)))
  vcl <- tmb_varcorr(m, unname(th))
  s <- sigma(m)
  gauss <- family(m)$family == "gaussian"
  bd <- m$fit$par[names(m$fit$par) == "betad"]
  top <- list(
    r_call = call_text,
    family = family(m)$family, link = family(m)$link, REML = isTRUE(m$modelInfo$REML),
    logLik = as.numeric(ll), df = attr(ll, "df"), AIC = AIC(m), BIC = BIC(m), nobs = nobs(m),
    n_par = length(m$fit$par),
    fixef = list(names = arr(names(fe)), estimate = arr(fe), se = arr(sqrt(diag(V))), vcov = mat(V)),
    vcov_warnings = arr(capV$warnings),
    sigma = if (gauss) s else NULL,
    gls = if (gauss) gls_check(m) else NULL,
    sigma_check = if (gauss) list(betad = unname(bd), exp_half_betad = exp(unname(bd) / 2),
                                  abs_diff_sigma_vs_exp_half_betad = abs(s - exp(unname(bd) / 2))) else NULL,
    varcorr = vcl$terms, theta_check_max_abs_diff = vcl$theta_check_max_abs_diff)
  if (!is.null(vc_print)) top <- c(top, list(VarCorr_print = vc_print(m)))
  c(top, list(
    theta = arr(th),
    par = list(names = arr(names(m$fit$par)), values = arr(m$fit$par)),
    objective = m$fit$objective,
    convergence = m$fit$convergence, optimizer_message = m$fit$message,
    iterations = m$fit$iterations, evaluations = as.list(m$fit$evaluations),
    pdHess = m$sdr$pdHess, max_abs_gradient = max(abs(m$sdr$gradient.fixed)),
    fit_warnings = arr(cap$warnings), fit_messages = arr(cap$messages)))
}

## ---------------------------------------------------------------- lme4 fit summaries

## Used by smooth_references.R and smooth_by_references.R (a gamm4 fit's $mer), known_cov_references.R and
## mm_references.R.

## An lme4 fit's criteria: REMLcrit (REML fits) or the deviance (ML), -2 logLik, logLik and its df; ml_at_reml: also
## (after the deviance) the ML deviance at the REML estimates of a gaussian REML fit.
lme4_criteria <- function(mer, ml_at_reml = FALSE) {
  reml <- isREML(mer)
  ll <- logLik(mer)
  c(list(REMLcrit = if (reml) REMLcrit(mer) else NULL,
         deviance = if (reml) NULL else deviance(mer)),
    if (ml_at_reml) list(deviance_ML_at_REML_estimates = if (reml && family(mer)$family == "gaussian")
                                                            capture(deviance(mer, REML = FALSE))$value else NULL),
    list(minus_two_logLik = -2 * as.numeric(ll),
         logLik = as.numeric(ll), logLik_df = attr(ll, "df"), logLik_REML = reml))
}

## The head of a gamm4 fit's summary (mer = fit$mer): the call, its warnings and messages, family, the criteria
## (with the ML deviance at REML estimates), sigma (gaussian).
lme4_fit_head <- function(mer, cap, call_text) {
  gauss <- family(mer)$family == "gaussian"
  c(list(r_call = call_text,
         fit_warnings = arr(cap$warnings), fit_messages = arr(cap$messages),
         family = family(mer)$family, link = family(mer)$link, REML = isREML(mer), nobs = nobs(mer)),
    lme4_criteria(mer, ml_at_reml = TRUE),
    list(sigma = if (gauss) sigma(mer) else NULL))
}

## VarCorr of an lme4 fit as variances by group (1 x 1 terms), plus Residual = sigma^2 (gaussian).
lme4_variances <- function(mer) {
  vars <- lapply(VarCorr(mer), function(v) as.numeric(v))
  if (family(mer)$family == "gaussian") vars$Residual <- sigma(mer)^2
  vars
}
## Those variances with their SDs; note: what the groups are.
lme4_varcorr <- function(vars, note) list(groups = arr(names(vars)), variance = vars, sd = lapply(vars, sqrt),
                                          note = note)

## fit@optinfo: the optimizer, evaluations, messages and lme4's finite-difference gradient at the optimum.
## lme4_messages: also lme4's convergence messages; extra: entries placed before the note; note: NULL for the
## standard note, which names where it comes from (src) and the objective.
lme4_optinfo <- function(mer, src = "fit@optinfo", objective = "final objective", lme4_messages = FALSE,
                         extra = NULL, note = NULL) {
  oi <- mer@optinfo
  if (is.null(note))
    note <- paste(paste0(src, "; gradient: lme4's finite-difference gradient (deriv12) of the"), objective,
                  "at the optimum", if (family(mer)$family == "gaussian") "(theta)" else "(stage 2: theta, then beta)")
  c(list(optimizer = oi$optimizer, feval = oi$feval, message = oi$message, conv_opt = oi$conv$opt),
    if (lme4_messages) list(lme4_messages = arr(unlist(oi$conv$lme4$messages))),
    list(optimizer_warnings = arr(unlist(oi$warnings)),
         gradient = arr(oi$derivs$gradient), max_abs_gradient = max(abs(oi$derivs$gradient))),
    extra, list(note = note))
}

## The start of a fit's summary in known_cov_references.R and mm_references.R: the R calls, the fit's warnings and
## messages, family, link and the estimation method.
lme4_calls_part <- function(fit, cap, calls) {
  gauss <- family(fit)$family == "gaussian"
  list(r_calls = arr(calls),
       fit_warnings = arr(cap$warnings), fit_messages = arr(cap$messages),
       family = family(fit)$family, link = family(fit)$link,
       estimation = if (gauss) (if (isREML(fit)) "REML" else "ML") else "ML (Laplace, nAGQ = 1)")
}

## theta, fixef, their se and vcov (and vcov's warnings).
lme4_coef_part <- function(fit) {
  fe <- fixef(fit)
  capV <- capture(vcov(fit)); V <- as.matrix(capV$value)
  stopifnot(identical(colnames(V), names(fe)))
  list(theta = named(getME(fit, "theta")), fixef = named(fe), fixef_se = arr(sqrt(diag(V))), vcov = mat(V),
       vcov_warnings = arr(capV$warnings))
}

## fitted(fit) on the training rows, against eta (the linear predictor recomputed by the script from fixef and the
## BLUPs; recorded for non-gaussian fits); design: the rest of the note (e.g. "= X fixef + Z b; ...").
lme4_fitted_part <- function(fit, eta, design) {
  gauss <- family(fit)$family == "gaussian"
  fv <- unname(fitted(fit))
  list(fitted = arr(fv),
       linear_predictor = if (gauss) NULL else arr(eta),
       fitted_check_max_abs_diff = max(abs(fv - (if (gauss) eta else exp(eta)))),
       fitted_note = paste("fitted(fit) on the training rows (response scale", if (gauss) ")" else
                             "= exp(linear_predictor))", design))
}

## The note on fixef_se; for a glmerMod also the RX-based se and vcov (use.hessian = FALSE).
lme4_fixef_se_notes <- function(fit) {
  if (family(fit)$family == "gaussian")
    return(list(fixef_se_note = "fixef_se = sqrt(diag(vcov(fit))) = sqrt(diag(sigma^2 (RX'RX)^-1)) = GLS se at the fit"))
  capR <- capture(vcov(fit, use.hessian = FALSE)); VR <- as.matrix(capR$value)
  list(fixef_se_note = paste("fixef_se = sqrt(diag(vcov(fit))): lme4 1.1-31's default for a glmerMod uses the",
                             "finite-difference Hessian of the stage-2 objective (theta, beta) when available;",
                             "fixef_se_RX = sqrt(diag(vcov(fit, use.hessian = FALSE))), the RX-based one (beta",
                             "at fixed theta)"),
       fixef_se_RX = arr(sqrt(diag(VR))),
       vcov_RX = mat(VR))
}

## A poisson GLMM's Laplace log-likelihood at fixed parameters, computed directly (as an independent check of lme4's):
## the mode u_hat of sum(dpois(y, exp(off + M u), log = TRUE)) - u'u / 2 by Newton (at most 100 steps, until the
## largest step is < 1e-14), then logLik = sum(dpois(y, mu_hat, log = TRUE)) - u_hat'u_hat / 2 - 1/2 log|I + M'
## diag(mu_hat) M|. off = X beta; M = theta times the random-effect design (n x q). Returns u_hat, mu_hat, the
## Newton iterations, logLik and the log-determinant.
poisson_laplace_direct <- function(y, off, M) {
  q <- ncol(M)
  u <- rep(0, q); it <- 0
  for (it in 1:100) {
    mu <- exp(off + as.vector(M %*% u))
    g <- as.vector(crossprod(M, y - mu)) - u
    H <- crossprod(M, mu * M) + diag(q)
    step <- solve(H, g)
    u <- u + step
    if (max(abs(step)) < 1e-14) break
  }
  mu <- exp(off + as.vector(M %*% u))
  H <- crossprod(M, mu * M) + diag(q)
  ld <- as.numeric(determinant(H)$modulus)
  list(u = u, mu = mu, iterations = it, logLik = sum(dpois(y, mu, log = TRUE)) - 0.5 * sum(u^2) - 0.5 * ld,
       logdet = ld)
}
## lme4's pieces of -2 logLik (getME(fit, "devcomp")$cmp, fit@resp$aic()) beside those of poisson_laplace_direct's
## result lap (y: the response); more_note: words added to the note.
laplace_components <- function(fit, lap, y, more_note = NULL) {
  cmp <- getME(fit, "devcomp")$cmp
  list(ldL2_lme4 = unname(cmp[["ldL2"]]), ldL2_direct = lap$logdet,
       ussq_lme4 = unname(cmp[["ussq"]]), ussq_direct = sum(lap$u^2),
       minus_two_loglik_y_lme4 = fit@resp$aic(),
       minus_two_loglik_y_direct = -2 * sum(dpois(y, lap$mu, log = TRUE)),
       note = paste(c("lme4's -2 logLik = aic (-2 sum log dpois(y, mu)) + ussq + ldL2 (getME(fit, 'devcomp')$cmp,",
                      "fit@resp$aic()); _direct: the same pieces here at the exact mode.", more_note), collapse = " "))
}

## ---------------------------------------------------------------- lme4: modular fits with a replaced Zt

## Shared by known_cov_references.R and mm_references.R: lme4 1.1-31's lmer() / glmer() bodies step by step after
## lFormula / glFormula, so that the script can replace the random-effect design (mod$reTrms$Zt, Ztlist) in between.
## The *_CALLS are the same steps as R calls, for the JSON's r_calls (after the script's `ctrl <- ...`, its
## lFormula / glFormula call and its Zt replacement).

## lmer()'s body from mkLmerDevfun on: lmod = lFormula(...)'s value, ctrl its lmerControl().
modular_lmer <- function(lmod, ctrl) {
  lmod$formula <- NULL
  devfun <- do.call(mkLmerDevfun, c(lmod, list(control = ctrl)))
  opt <- optimizeLmer(devfun, optimizer = ctrl$optimizer, restart_edge = ctrl$restart_edge,
                      boundary.tol = ctrl$boundary.tol, control = ctrl$optCtrl, calc.derivs = ctrl$calc.derivs,
                      use.last.params = ctrl$use.last.params)
  cc <- checkConv(attr(opt, "derivs"), opt$par, ctrl = ctrl$checkConv, lbound = environment(devfun)$lower)
  mkMerMod(environment(devfun), opt, lmod$reTrms, fr = lmod$fr, lme4conv = cc)
}
MODULAR_LMER_CALLS <- c(
  "lmod$formula <- NULL",
  "devfun <- do.call(mkLmerDevfun, c(lmod, list(control = ctrl)))",
  paste("opt <- optimizeLmer(devfun, optimizer = ctrl$optimizer, restart_edge = ctrl$restart_edge, boundary.tol =",
        "ctrl$boundary.tol, control = ctrl$optCtrl, calc.derivs = ctrl$calc.derivs, use.last.params =",
        "ctrl$use.last.params)"),
  "cc <- checkConv(attr(opt, \"derivs\"), opt$par, ctrl = ctrl$checkConv, lbound = environment(devfun)$lower)",
  "fit <- mkMerMod(environment(devfun), opt, lmod$reTrms, fr = lmod$fr, lme4conv = cc)")

## glmer()'s body (nAGQ = 1) from mkGlmerDevfun on: stage 1 (bobyqa, theta, nAGQ = 0), then stage 2 (Nelder_Mead,
## theta and beta); glmod = glFormula(...)'s value, ctrl its glmerControl().
modular_glmer <- function(glmod, ctrl) {
  glmod$formula <- NULL
  devfun <- do.call(mkGlmerDevfun, c(glmod, list(control = ctrl, nAGQ = 0)))
  opt <- optimizeGlmer(devfun, optimizer = ctrl$optimizer[[1]], restart_edge = FALSE, boundary.tol = 0,
                       control = ctrl$optCtrl, nAGQ = 0, calc.derivs = FALSE)
  devfun <- updateGlmerDevfun(devfun, glmod$reTrms, nAGQ = 1)
  start <- lme4:::updateStart(NULL, theta = opt$par)
  opt <- optimizeGlmer(devfun, optimizer = ctrl$optimizer[[2]], restart_edge = ctrl$restart_edge,
                       boundary.tol = ctrl$boundary.tol, control = ctrl$optCtrl, start = start, nAGQ = 1, stage = 2,
                       calc.derivs = ctrl$calc.derivs, use.last.params = ctrl$use.last.params)
  cc <- checkConv(attr(opt, "derivs"), opt$par, ctrl = ctrl$checkConv, lbound = environment(devfun)$lower)
  mkMerMod(environment(devfun), opt, glmod$reTrms, fr = glmod$fr, lme4conv = cc)
}
## The words on those two stages for a case's notes (as known_cov_references.R and mm_references.R record them).
MODULAR_GLMER_NOTE <- paste(
  "poisson log link, Laplace (glmer's two stages: stage 1 bobyqa over theta with nAGQ = 0, stage 2 Nelder_Mead over",
  "theta and beta with nAGQ = 1). theta = sigma_b. deviance is lme4's deviance() of a glmerMod (not -2 logLik;",
  "minus_two_logLik is). fit_warnings: stage 1's 'unused control arguments ignored' (see the header).")
## The JSON's `tolerances` for those fits: the gaussian (lmer) and poisson (glmer, 1 theta + 2 beta) controls as
## text, and the words on them; see: where they are explained.
modular_tolerances <- function(lmer_text, glmer_text, see) list(
  gaussian = lmer_text, poisson = glmer_text,
  note = paste0("the repository's tight lme4 settings (", see, "): nloptwrap tolerances for lmer; tolPwrss 1e-13 and ",
                "Nelder_Mead's xt (1 theta + 2 beta) for glmer stage 2; stage 1 bobyqa warns 'unused control ",
                "arguments ignored' (kept in fit_warnings)."))
MODULAR_GLMER_CALLS <- c(
  "glmod$formula <- NULL",
  "devfun <- do.call(mkGlmerDevfun, c(glmod, list(control = ctrl, nAGQ = 0)))",
  paste("opt <- optimizeGlmer(devfun, optimizer = ctrl$optimizer[[1]], restart_edge = FALSE, boundary.tol = 0,",
        "control = ctrl$optCtrl, nAGQ = 0, calc.derivs = FALSE)   # stage 1: bobyqa, theta, nAGQ = 0"),
  "devfun <- updateGlmerDevfun(devfun, glmod$reTrms, nAGQ = 1)",
  "start <- lme4:::updateStart(NULL, theta = opt$par)",
  paste("opt <- optimizeGlmer(devfun, optimizer = ctrl$optimizer[[2]], restart_edge = ctrl$restart_edge,",
        "boundary.tol = ctrl$boundary.tol, control = ctrl$optCtrl, start = start, nAGQ = 1, stage = 2,",
        "calc.derivs = ctrl$calc.derivs, use.last.params = ctrl$use.last.params)   # stage 2: Nelder_Mead, theta + beta"),
  "cc <- checkConv(attr(opt, \"derivs\"), opt$par, ctrl = ctrl$checkConv, lbound = environment(devfun)$lower)",
  "fit <- mkMerMod(environment(devfun), opt, glmod$reTrms, fr = glmod$fr, lme4conv = cc)")

## ---------------------------------------------------------------- gamm4: default and tight fits

## Shared by smooth_references.R and smooth_by_references.R.

## call_text with `control = ctl` appended as its last argument.
with_control <- function(call_text, ctl) sub(")$", sprintf(", control = %s)", ctl), call_text)

## call_text evaluated in the global environment (warnings and messages captured); block(fit, cap, call_text) is
## the script's summary of the fit.
fit_and_block <- function(call_text, block) {
  cap <- capture(eval(parse(text = call_text), envir = globalenv()))
  list(fit = cap$value, cap = cap, block = block(cap$value, cap, call_text))
}

## theta and fixef differences between two fit summaries (each a named()).
fit_diffs <- function(b1, b0) list(
  theta_max_abs_diff = max(abs(unlist(b1$theta$values) - unlist(b0$theta$values))),
  fixef_max_abs_diff = max(abs(unlist(b1$fixef$values) - unlist(b0$fixef$values))))

## A case fitted with gamm4's default control (`results`) and with control = tight_ctl (`tight`), each summarised
## by block; compare(b1, b0) gives the script's own tight - default differences, after logLik, theta and fixef.
## Returns the case's record (the script adds its own parts) and the two fits.
tight_case <- function(case_id, call_text, tight_ctl, data_file, data_prep, block, compare, notes) {
  f0 <- fit_and_block(call_text, block)
  tight_call <- with_control(call_text, tight_ctl)
  f1 <- fit_and_block(tight_call, block)
  b0 <- f0$block; b1 <- f1$block
  stopifnot(identical(b0$theta$names, b1$theta$names), identical(b0$fixef$names, b1$fixef$names))
  cmp <- c(list(logLik_tight_minus_default = b1$logLik - b0$logLik), fit_diffs(b1, b0), compare(b1, b0))
  list(fits = list(default = f0$fit, tight = f1$fit),
       record = list(case_id = case_id, data_file = data_file, data_prep = data_prep,
                     estimation = if (b0$REML) "REML" else "ML (Laplace)",
                     r_call = call_text, control = "gamm4's default (control = NULL: lmerControl() / glmerControl())",
                     results = b0,
                     tight = list(control = tight_ctl, r_call = tight_call, results = b1),
                     tight_vs_default = cmp, notes = notes))
}

## How mgcv built sm, a thin plate (tprs.smooth, m = 2, d = 1) or cubic regression (cr.smooth) smooth of x, as the
## JSON part list(tp = ...) or list(cr = ...) (list() for other classes): tp: the shift, the unique (shifted) x values
## Xu and UZ; cr: the knots and F; then extra and the note, note$tp or note$cr. x: the data's x.
smooth_construction <- function(sm, x, note, extra = list()) {
  if (inherits(sm, "tprs.smooth"))
    list(tp = c(list(shift = unname(as.numeric(sm$shift)), Xu_dim = arr(dim(sm$Xu)), UZ_dim = arr(dim(sm$UZ)),
                     Xu = arr(sm$Xu[, 1]), UZ = mat(sm$UZ), n_unique_x = length(unique(x))),
                extra, list(note = note$tp)))
  else if (inherits(sm, "cr.smooth")) list(cr = c(list(knots = arr(unname(sm$xp)), F = mat(sm$F)), extra,
                                                  list(note = note$cr)))
  else list()
}

## A case's `results` (blk = "results") or `tight` results (blk = "tight").
case_results <- function(case, blk) if (blk == "results") case$results else case$tight$results

## A second tight setting: the case's r_call refitted with control = ctl, against its `tight` results (logLik,
## theta, fixef, then compare(b, tight results)); an error is recorded instead.
tight_stability <- function(case, ctl, block, compare) {
  alt_call <- with_control(case$r_call, ctl)
  or_error({
    fa <- fit_and_block(alt_call, block)
    b1 <- case$tight$results
    c(list(r_call = alt_call, fit_warnings = fa$block$fit_warnings, logLik = fa$block$logLik,
           logLik_minus_tight = fa$block$logLik - b1$logLik),
      fit_diffs(fa$block, b1), compare(fa$block, b1))
  })
}

## The JSON read back (`back`): in every case's `results` and `tight` results, logLik, theta, fixef and the script's
## own fields (each a path, e.g. c("gam", "Vp")) are identical to those written.
check_tight_read_back <- function(back, cases, fields) {
  for (cid in names(cases)) for (blk in c("results", "tight")) {
    r0 <- case_results(cases[[cid]], blk); r1 <- case_results(back$cases[[cid]], blk)
    stopifnot(identical(r1$logLik, r0$logLik),
              read_back_identical(r1$theta$values, r0$theta$values),
              read_back_identical(r1$fixef$values, r0$fixef$values),
              all(vapply(fields, function(p) read_back_identical(r1[[p]], r0[[p]]), TRUE)))
  }
}

## ---------------------------------------------------------------- the end of a script

## Write `top` with a last entry `failures` (null when there are none) as JSON to file, say so ("wrote <file>", with
## its size if show_size), and return it read back (jsonlite, simplifyVector = FALSE), for the script's checks that
## it is valid and its numbers exact.
write_json_read_back <- function(top, failures, file, show_size = TRUE) {
  write_json_file(c(top, list(failures = if (length(failures)) failures else NULL)), file)
  back <- jsonlite::fromJSON(file, simplifyVector = FALSE)
  if (show_size) cat("wrote", file, "(", file.size(file), "bytes )\n") else cat("wrote", file, "\n")
  back
}

## Numbers read back from the JSON (b, as fromJSON(simplifyVector = FALSE) gives them) identical to those written
## (a; a matrix is written as an array of rows).
read_back_identical <- function(b, a) identical(as.numeric(unlist(b)), as.numeric(if (is.matrix(a)) t(a) else a))

## The failed cases (name: message), or "no failures".
report_failures <- function(failures) {
  if (length(failures)) {
    cat("\nFAILED cases:\n")
    for (n in names(failures)) cat(" ", n, ":", failures[[n]], "\n")
  } else cat("\nno failures\n")
}

## ---------------------------------------------------------------- glmmTMB scripts: cases and the summary table

## Shared by structured_references.R, distance_references.R, rr_toep_references.R and matern_references.R.

## newton_polish as the scripts record it (polish: the script's function of m); a failure becomes its status.
try_polish <- function(polish, m)
  tryCatch(polish(m), error = function(e) list(status = paste("failed:", conditionMessage(e))))

## NA for NULL (a summary-table cell).
or_na <- function(x) if (is.null(x)) NA else x

## A case's row of the summary table printed at the end (not written out): the columns every glmmTMB script has
## (the control used, usable, logLik, df, sigma, fixef (se), convergence, pdHess, gradient, theta check, the GLS
## logLik check, the polish's gains, the warnings of the reference fit and of the warned fits before it), then the
## script's own columns (...). warned: the warned fits, as list(default = default_warn, refit = refit_warn).
tmb_summary_row <- function(case_id, control_used, usable, blk, pol, cap, warned, ...) {
  data.frame(
    case_id = case_id,
    control = if (control_used == "default") "default" else if (control_used == REFIT_CONTROL) "refit" else "fallback",
    usable = usable,
    logLik = blk$logLik, df = blk$df, sigma = or_na(blk$sigma),
    fixef = paste(sprintf("%.6f(%.6f)", unlist(blk$fixef$estimate), unlist(blk$fixef$se)), collapse = " "),
    conv = blk$convergence, pdHess = blk$pdHess, grad = blk$max_abs_gradient,
    theta_chk = blk$theta_check_max_abs_diff,
    ll_direct = or_na(blk$gls$logLik_direct_minus_glmmTMB),
    polish_dll = or_na(pol$logLik_gain_vs_fit), polish_dpar = or_na(pol$max_abs_diff_par_vs_fit),
    warnings = paste(unique(c(unlist(lapply(names(warned), function(w)
      if (!is.null(warned[[w]])) paste0(w, ": ", unlist(warned[[w]]$warnings)))), cap$warnings)), collapse = " | "),
    ..., stringsAsFactors = FALSE)
}

## Every case's logLik and fixef estimates (and, with theta, its results$theta) read back from the JSON identical to
## those written.
tmb_read_back_ok <- function(back, cases, theta = TRUE) all(vapply(names(cases), function(cid) {
  r0 <- cases[[cid]]$results; r1 <- back$cases[[cid]]$results
  identical(r1$logLik, r0$logLik) && read_back_identical(r1$fixef$estimate, r0$fixef$estimate) &&
    (!theta || read_back_identical(r1$theta, r0$theta))
}, TRUE))

## The summary table of the rows (printed with wide lines and 12 digits), after its heading.
summary_table <- function(rows) {
  tab <- do.call(rbind, rows); rownames(tab) <- NULL
  options(width = 250, digits = 12)
  cat("\n==== summary ====\n")
  tab
}
## Each case's warnings (or "none"), the case id padded to width.
print_warnings <- function(tab, width) {
  cat("\nwarnings:\n")
  for (i in seq_len(nrow(tab))) cat(sprintf(paste0("  %-", width, "s %s\n"), tab$case_id[i],
                                            if (nzchar(tab$warnings[i])) tab$warnings[i] else "none"))
}
