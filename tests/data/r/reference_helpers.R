## Helpers shared by the R scripts that write the reference data under tests/data/ (exact number formatting,
## JSON and CSV writers, capture of warnings and messages, the Newton polish of a glmmTMB fit).
##
## The scripts are run from the repository root and source this file relative to it:
##     source(file.path("tests", "data", "r", "reference_helpers.R"))
## It defines functions only (no packages attached, no random numbers drawn); parse_exact / write_json_file call
## jsonlite by its namespace. Used by kr_references.R, glmm_profile_references.R, structured_references.R,
## distance_references.R, rr_toep_references.R, r2_count_references.R, smooth_references.R and known_cov_references.R (the older scripts still carry their own copies).
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

## ---------------------------------------------------------------- JSON arrays

arr <- function(x) { if (is.null(x)) x <- character(0); I(unname(as.vector(x))) }  # always a JSON array
mat <- function(x) { x <- as.matrix(x); dimnames(x) <- NULL; x }                    # a matrix, as an array of rows
by_rows <- function(M) { M <- as.matrix(M); lapply(seq_len(nrow(M)), function(i) arr(M[i, ])) }  # list of row arrays

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
## Shared by structured_references.R, distance_references.R and rr_toep_references.R. tmb_block calls the
## script's own tmb_varcorr(m, th) and gls_check(m) (looked up when called), which write the structure-specific parts.

## Package versions recorded in the JSON; extra: named entries placed after TMB.
glmmtmb_versions <- function(extra = list()) c(
  list(R = R.version.string,
       glmmTMB = as.character(packageVersion("glmmTMB")),
       TMB = as.character(packageVersion("TMB"))),
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
