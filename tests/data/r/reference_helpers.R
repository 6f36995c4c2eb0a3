## Helpers shared by the R scripts that write the reference data under tests/data/ (exact number formatting,
## JSON and CSV writers, capture of warnings and messages, the Newton polish of a glmmTMB fit).
##
## The scripts are run from the repository root and source this file relative to it:
##     source(file.path("tests", "data", "r", "reference_helpers.R"))
## It defines functions only (no packages attached, no random numbers drawn); parse_exact / write_json_file call
## jsonlite by its namespace. Used by kr_references.R, glmm_profile_references.R, structured_references.R,
## distance_references.R and r2_count_references.R (the older scripts still carry their own copies).
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
