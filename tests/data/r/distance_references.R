## glmmTMB reference fits with DISTANCE-BASED random-effect covariances: ou (1-D times), exp, gau (and mat) (2-D
## coordinates), with the coordinates carried by glmmTMB::numFactor levels.
##
## Run from the repository root:   Rscript tests/data/r/distance_references.R
## Writes tests/data/distance_times.csv (data C), tests/data/distance_space.csv (data D) (simulated; doubles as the
## shortest round-trip decimals, read back equal), tests/data/distance_references.json (all cases) and prints a
## summary table. Every case is wrapped in tryCatch, so one failure does not stop the rest; a failed case is
## recorded under `failures` in the JSON and reported at the end.
##
## Control: each case is first fitted with glmmTMB's default control; if that fit warns, it is refitted with
## control = glmmTMBControl(optCtrl = list(iter.max = 1e4, eval.max = 1e4)) and the refit is the reference
## (`control_used`, `default_fit`). `newton_polish` (not a glmmTMB call): Newton steps on the fit's own objective
## from its optimum, to show how far the nlminb stop is from the optimum.
##
## Number formatting, CSV writer, JSON conventions, the Newton polish, the walk over the terms' theta (tmb_terms),
## the summary table's common columns and the read-back checks are in tests/data/r/reference_helpers.R (shared with
## tests/data/r/structured_references.R and the other glmmTMB scripts).
##
## Tested with R 4.2.2, glmmTMB 1.1.5, TMB 1.9.2, Matrix 1.5-3, jsonlite 1.8.4 (Debian bookworm packages).

source(file.path("tests", "data", "r", "reference_helpers.R"))   # arr, mat, capture, parse_exact, write_csv_exact,
                                                                 # newton_polish, glmmTMB helpers
OUT <- start_script(c("glmmTMB", "jsonlite"))   # OUT = tests/data

versions <- glmmtmb_versions(built_with = TRUE)

## ---------------------------------------------------------------- data

set.seed(20261204)   # default RNG kinds (Mersenne-Twister, Inversion, Rejection)

## ---- data C: 50 subjects x the same 6 irregular times; OU (continuous-time AR1) subject effects.
## Draw order: x = rnorm(n); Z1 = matrix(rnorm(n), n_subj, n_time, byrow = TRUE); eps = rnorm(n, 0, 0.4);
## Z2 = matrix(rnorm(n), n_subj, n_time, byrow = TRUE); yc = rpois(n, exp(0.3 + 0.3 x + bc)).
## b = Z1 %*% chol(Sigma(1)), bc = Z2 %*% chol(Sigma(0.5)), Sigma(sd)[i, j] = sd^2 exp(-|t_i - t_j| / 2)
## (row s = the subject's effects at the 6 times). Rows subject-major, time ascending within subject.
T_C <- c(0, 1, 1.5, 3, 5, 8)
ou_sigma <- function(t, sd, scale) sd^2 * exp(-abs(outer(t, t, "-")) / scale)
n_subj <- 50; n_time <- length(T_C); nC <- n_subj * n_time
subjC <- sprintf("s%02d", rep(seq_len(n_subj), each = n_time))
timeC <- rep(T_C, times = n_subj)
idxC <- cbind(rep(seq_len(n_subj), each = n_time), rep(seq_len(n_time), times = n_subj))
xC <- rnorm(nC)
Z1 <- matrix(rnorm(nC), n_subj, n_time, byrow = TRUE)
bC <- Z1 %*% chol(ou_sigma(T_C, 1.0, 2))
epsC <- rnorm(nC, 0, 0.4)
yC <- 1 + 0.5 * xC + bC[idxC] + epsC
Z2 <- matrix(rnorm(nC), n_subj, n_time, byrow = TRUE)
bcC <- Z2 %*% chol(ou_sigma(T_C, 0.5, 2))
ycC <- rpois(nC, exp(0.3 + 0.3 * xC + bcC[idxC]))
C <- data.frame(y = yC, yc = as.integer(ycC), x = xC, time = timeC, subject = factor(subjC), stringsAsFactors = FALSE)

## ---- data D: 80 sites at random coordinates (rounded to 3 decimals), 3 rows per site; exponential spatial effect.
## Draw order: x1 = round(runif(80, 0, 10), 3); x2 = round(runif(80, 0, 10), 3); zb = rnorm(80);
## b = t(chol(Sigma)) %*% zb, Sigma = 0.8^2 exp(-d / 3), d = Euclidean distance between sites; z = rnorm(240);
## eps = rnorm(240, 0, 0.5); y = 2 + 0.3 z + b[site] + eps. Rows site-major (site01 x3, site02 x3, ...).
n_site <- 80; n_rep <- 3; nD <- n_site * n_rep
x1s <- round(runif(n_site, 0, 10), 3); x2s <- round(runif(n_site, 0, 10), 3)
dD <- as.matrix(dist(cbind(x1s, x2s)))
zb <- rnorm(n_site)
bD <- drop(t(chol(0.8^2 * exp(-dD / 3))) %*% zb)
siteD <- rep(seq_len(n_site), each = n_rep)
zD <- rnorm(nD)
epsD <- rnorm(nD, 0, 0.5)
yD <- 2 + 0.3 * zD + bD[siteD] + epsD
D <- data.frame(y = yD, z = zD, x1 = x1s[siteD], x2 = x2s[siteD], site = factor(sprintf("site%02d", siteD)),
                group = factor(rep("1", nD)), stringsAsFactors = FALSE)
stopifnot(!anyDuplicated(paste(x1s, x2s)))

csvC <- file.path(OUT, "distance_times.csv"); csvD <- file.path(OUT, "distance_space.csv")
write_csv_exact(C, csvC); write_csv_exact(D, csvD)
cat("wrote", csvC, "(", nrow(C), "rows ) and", csvD, "(", nrow(D), "rows ); read-back exact\n")

## The fits below use the data re-read from the CSVs (identical values; checked).
C2 <- read.csv(csvC, colClasses = c(y = "character", yc = "integer", x = "character", time = "character",
                                    subject = "character"))
for (nm in c("y", "x", "time")) C2[[nm]] <- parse_exact(C2[[nm]])
C2$subject <- factor(C2$subject)
D2 <- read.csv(csvD, colClasses = c(y = "character", z = "character", x1 = "character", x2 = "character",
                                    site = "character", group = "character"))
for (nm in c("y", "z", "x1", "x2")) D2[[nm]] <- parse_exact(D2[[nm]])
D2$site <- factor(D2$site); D2$group <- factor(D2$group)
stopifnot(isTRUE(all.equal(C2, C, tolerance = 0)), isTRUE(all.equal(D2, D, tolerance = 0)),
          identical(C2$y, C$y), identical(C2$x, C$x), identical(C2$time, C$time), identical(C2$yc, C$yc),
          identical(D2$y, D$y), identical(D2$z, D$z), identical(D2$x1, D$x1), identical(D2$x2, D$x2))
C <- C2; D <- D2

## numFactor coordinates (glmmTMB's covstruct vignette style)
C$times <- numFactor(C$time)
D$pos <- numFactor(D$x1, D$x2)

## Checks of numFactor / parseNumLevels on these data:
## (1) parseNumLevels(levels) gives back exactly the numeric coordinates; (2) level order: sorted by the LAST
## coordinate, ties by the first ("first coordinate fastest running"); (3) each row's level is its own coordinates.
levC <- levels(C$times); levD <- levels(D$pos)
pC <- parseNumLevels(levC); pD <- parseNumLevels(levD)
stopifnot(ncol(pC) == 1, identical(drop(pC), T_C), !is.unsorted(drop(pC), strictly = TRUE))
stopifnot(ncol(pD) == 2, nrow(pD) == n_site)
ordD <- order(x2s, x1s)
stopifnot(identical(pD[, 1], x1s[ordD]), identical(pD[, 2], x2s[ordD]))
stopifnot(identical(parseNumLevels(as.character(C$times))[, 1], C$time),
          identical(unname(parseNumLevels(as.character(D$pos))), unname(cbind(D$x1, D$x2))))
stopifnot(identical(parseNumLevels(paste0("times", levC)), pC), identical(parseNumLevels(paste0("pos", levD)), pD))
## site of each pos level (the random effects of the spatial terms are in pos level order)
site_of_level <- as.character(D$site[match(levD, as.character(D$pos))])

SIM_CODE <- paste(
  "set.seed(20261204); default RNG kinds. Data C (distance_times.csv): 50 subjects s01..s50 x times",
  "t = (0, 1, 1.5, 3, 5, 8); Sigma(sd)[i, j] = sd^2 exp(-|t_i - t_j| / 2); in this order: x = rnorm(300);",
  "Z1 = matrix(rnorm(300), 50, 6, byrow = TRUE); b = Z1 %*% chol(Sigma(1)); eps = rnorm(300, 0, 0.4);",
  "y = 1 + 0.5 x + b[subject, time] + eps; Z2 = matrix(rnorm(300), 50, 6, byrow = TRUE);",
  "bc = Z2 %*% chol(Sigma(0.5)) (independent of b); yc = rpois(300, exp(0.3 + 0.3 x + bc[subject, time])).",
  "Rows subject-major, time ascending. Then data D (distance_space.csv): x1 = round(runif(80, 0, 10), 3);",
  "x2 = round(runif(80, 0, 10), 3) (site coordinates, rounded so that numFactor's as.character labels are",
  "exact; no duplicated sites); zb = rnorm(80); b = t(chol(0.8^2 exp(-d / 3))) %*% zb with d the Euclidean",
  "distance matrix of the sites (in site order); z = rnorm(240); eps = rnorm(240, 0, 0.5);",
  "y = 2 + 0.3 z + b[site] + eps; rows site-major (3 per site), site = sprintf('site%02d', i), group = '1'.")

## ---------------------------------------------------------------- structure helpers


PARAM_NOTES <- list(
  source = paste("glmmTMB 1.1.5: src/glmmTMB.cpp termwise_nll (read in the GitHub repository glmmTMB/glmmTMB at",
                 "887fb25f, 2022-11-15, the last commit before the post-release bump 44c61880 '1.1.5.9000'; the",
                 "ou/exp/gau/mat code is unchanged up to 1.1.15), R/glmmTMB.R getReStruc, R/utils_covstruct.R",
                 "numFactor / parseNumLevels (identical to the installed 1.1.5's deparsed functions), TMB 1.9.2",
                 "include/convenience.hpp matern(). Every map below is re-derived from theta and matched to the",
                 "installed glmmTMB 1.1.5's VarCorr over the FULL correlation matrix in every case (theta_check)."),
  coordinates = paste(
    "numFactor(x, ...) (R/utils_covstruct.R): y = data.frame(x, ...); each row's label is",
    "paste0('(', paste(as.character(col1), as.character(col2), ..., sep = ','), ')'), e.g. '(1.5)' (1-D) or",
    "'(3.142,0.577)' (2-D); as.character writes 15 significant digits, so coordinates are exact only if they",
    "have <= 15 (here: times are 0, 1, 1.5, 3, 5, 8; x1, x2 are rounded to 3 decimals). Levels: the unique rows,",
    "ordered by `for (col in seq_along(y0)) y0 <- y0[order(y0[[col]]), ]` (stable), i.e. sorted by the LAST",
    "coordinate, ties by the earlier ones ('first coordinate fastest running'): data D's levels are ordered by",
    "(x2, x1), not by site. The term `ou(times + 0 | subject)` / `exp(pos + 0 | group)` has one column per",
    "level, named '<variable><label>' (e.g. 'times(1.5)', 'pos(3.142,0.577)'); getReStruc calls",
    "parseNumLevels(reTrms$cnms[[i]]) on these column names: sub('^.*(\\\\(.+\\\\))$', '\\\\1', .) keeps the",
    "trailing parenthesised group, strips the parentheses, strsplit(., ',') and as.numeric -> an n x k",
    "coordinate matrix (error 'Failed to parse numeric levels' otherwise, e.g. with an intercept column).",
    "ou: must be 1 column ('ou' structure is for 1D coordinates only.) and strictly increasing ('ou' is for",
    "strictly sorted times only.); term$times = those values. exp/gau/mat: term$dist = as.matrix(dist(coords)),",
    "Euclidean distance, any number of coordinates. The random effects b of a term are in level order: for data",
    "D the 80 b's of the single `group` are in pos level order (data.D.pos_levels, site_of_level); for data C",
    "each subject has 6 b's in time order."),
  theta = paste("theta = getME(fit, 'theta') = fit$fit$par[names == 'theta']; within a term: theta[1] = log(sd),",
                "ONE sd for all levels (VarCorr's stddev is that value repeated); theta[2] (and theta[3] for mat)",
                "sets the correlation. Blocks: ou 4 (2 parameters), exp 5 (2), gau 6 (2), mat 7 (3)."),
  ou = paste("ou (blockCode 4): corr(i, j) = exp(-exp(theta[2]) * |t_i - t_j|). theta[2] = log of a RATE (per",
             "unit time); the time scale is 1 / exp(theta[2]) = exp(-theta[2]) (true value here: rate 0.5, theta[2]",
             "= log 0.5). The likelihood is computed sequentially (u_1 ~ N(0, sd), u_i | u_{i-1} ~",
             "N(rho_i u_{i-1}, sd sqrt(1 - rho_i^2)), rho_i = exp(-rate (t_i - t_{i-1}))), the same MVN;",
             "correlation is always positive."),
  exp = paste("exp (blockCode 5): corr(i, j) = exp(-d_ij * exp(-theta[2])) = exp(-d_ij / s), s = exp(theta[2]) a",
              "SCALE (distance units; note the opposite sign convention to ou: ou's theta[2] is log(1/scale)).",
              "True value here: s = 3, theta[2] = log 3."),
  gau = paste("gau (blockCode 6): corr(i, j) = exp(-d_ij^2 * exp(-2 theta[2])) = exp(-(d_ij / s)^2), s =",
              "exp(theta[2]) (no factor 2 in the exponent)."),
  mat = paste("mat (blockCode 7): corr(i, j) = matern(d_ij, phi = exp(theta[2]), kappa = exp(theta[3])) =",
              "(d/phi)^kappa K_kappa(d/phi) / (Gamma(kappa) 2^(kappa - 1)) for i != j, 1 on the diagonal (TMB",
              "1.9.2 convenience.hpp; K = modified Bessel function of the second kind, R's besselK). kappa = 0.5",
              "gives exp(-d/phi), i.e. glmmTMB's exp with s = phi."),
  reporting = paste("glmmTMB 1.1.5 does not report the rate / scale / range anywhere: VarCorr(fit)$cond[[term]]",
                    "is the full n x n covariance with attributes stddev (n equal values) and correlation (the",
                    "n x n matrix), and print() shows every SD and the full lower-triangle correlation matrix",
                    "(no '(ou)' / '(exp)' label; only ar1 and cs are summarised). The natural-scale parameter is",
                    "therefore only available as exp(theta[2]) (and exp(theta[3])); `natural` in each case gives",
                    "it, and `scale_from_VarCorr` recovers it from VarCorr's correlations (ou: -log(corr)/|dt|;",
                    "exp: -d/log(corr); gau: d/sqrt(-log(corr)), pairs with corr > 1e-8)."),
  sigma = paste("gaussian: betad = fit$fit$par['betad'] = log(sigma^2); sigma(fit) = exp(betad / 2)."),
  REML = paste("REML = TRUE: the fixed effects are integrated out with the random effects (Laplace, exact for",
               "gaussian); fit$fit$par holds only theta and betad; fixef(fit) are the conditional modes (GLS",
               "estimates), se from vcov(fit) (sdreport, includes the covariance parameters' uncertainty; `gls`",
               "gives the lme4-style sqrt(diag((X'V^-1X)^-1))). logLik is the restricted log-likelihood; df counts",
               "the fixed effects too."))

## correlation matrix of one term from its theta and the term's coordinates (times / dist), per PARAM_NOTES.
dist_corr <- function(name, th, term) {
  if (name == "ou") {
    t <- term$times; return(exp(-exp(th[2]) * abs(outer(t, t, "-"))))
  }
  d <- term$dist
  corr <- switch(name,
    exp = exp(-d * exp(-th[2])),
    gau = exp(-d^2 * exp(-2 * th[2])),
    mat = { u <- d / exp(th[2]); k <- exp(th[3]); u^k * besselK(u, k) / (gamma(k) * 2^(k - 1)) },
    stop("structure not handled: ", name))
  diag(corr) <- 1
  corr
}
natural_params <- function(name, th) {
  switch(name,
    ou = list(rate = exp(th[2]), time_scale = exp(-th[2]), corr_at_unit_lag = exp(-exp(th[2])),
              note = "corr = exp(-rate |dt|); rate = exp(theta[2]); time_scale = 1 / rate"),
    exp = list(scale = exp(th[2]), note = "corr = exp(-d / scale); scale = exp(theta[2])"),
    gau = list(scale = exp(th[2]), note = "corr = exp(-(d / scale)^2); scale = exp(theta[2])"),
    mat = list(range = exp(th[2]), smoothness = exp(th[3]),
               note = "corr = (d/range)^kappa K_kappa(d/range) / (Gamma(kappa) 2^(kappa-1)); kappa = smoothness"))
}
## the rate / scale recovered from VarCorr's correlation matrix and the coordinates
scale_from_corr <- function(name, corr, term) {
  if (name == "ou") { dt <- abs(outer(term$times, term$times, "-")); k <- dt > 0; v <- -log(corr[k]) / dt[k] }
  else if (name == "exp") { d <- term$dist; k <- d > 0 & corr > 1e-8; v <- -d[k] / log(corr[k]) }
  else if (name == "gau") { d <- term$dist; k <- d > 0 & corr > 1e-8; v <- d[k] / sqrt(-log(corr[k])) }
  else return(NULL)
  list(what = if (name == "ou") "rate" else "scale", min = min(v), max = max(v), n_pairs = sum(k))
}

LEVELS_SHOWN <- 4

## VarCorr of the conditional model, per term, with theta -> (sd, corr) checks.
tmb_varcorr <- function(m, th) {
  vc <- VarCorr(m)$cond
  reS <- m$modelInfo$reStruc$condReStruc
  out <- list(); pos <- 0; maxdiff <- 0
  for (i in seq_along(vc)) {
    S <- vc[[i]]; term <- reS[[i]]; code <- term$blockCode; n <- term$blockSize; nt <- term$blockNumTheta
    name <- BLOCK_NAMES[[as.character(code)]]
    thi <- th[pos + seq_len(nt)]; pos <- pos + nt
    sd <- attr(S, "stddev"); corr <- as.matrix(attr(S, "correlation"))
    rc <- dist_corr(name, thi, term)
    d <- max(abs(exp(thi[1]) - sd), abs(rc - corr))
    maxdiff <- max(maxdiff, d)
    k <- seq_len(min(LEVELS_SHOWN, n))
    coords <- parseNumLevels(colnames(S))
    out[[i]] <- list(
      group = names(vc)[i], term = names(reS)[i], structure = name, blockCode = code,
      blockSize = n, blockReps = term$blockReps, n_theta = nt,
      theta = arr(thi), sd = exp(thi[1]), var = exp(2 * thi[1]),
      natural = natural_params(name, thi),
      scale_from_VarCorr = scale_from_corr(name, corr, term),
      levels_shown = arr(colnames(S)[k]), coords_shown = mat(coords[k, , drop = FALSE]),
      distance_shown = mat(as.matrix(dist(coords))[k, k]),
      corr_shown = mat(corr[k, k]), cov_shown = mat(as.matrix(S)[k, k]),
      VarCorr_stddev_range = arr(range(sd)),
      offdiag_corr_range = arr(range(corr[row(corr) != col(corr)])),
      theta_check = list(max_abs_diff_vs_VarCorr = d,
                         note = paste("max |exp(theta[1]) - stddev|, |corr(theta, coordinates) - VarCorr corr| over",
                                      "the full", n, "x", n, "matrix; coordinates from parseNumLevels(colnames)")))
  }
  stopifnot(pos == length(th))
  list(terms = out, theta_check_max_abs_diff = maxdiff)
}

## Newton polish (reference_helpers.R) with sd / natural parameters / corr of each term from the polished theta.
## Run AFTER everything else has been extracted from m (it moves m$obj's internal state).
polish_terms <- function(th, reS) tmb_terms(th, reS, function(label, term, name, thi, k) list(
  term = label, structure = name, theta = arr(thi), sd = exp(thi[1]), natural = natural_params(name, thi),
  corr_shown = mat(dist_corr(name, thi, term)[k, k])), shown = LEVELS_SHOWN)
polish <- function(m) newton_polish(m, polish_terms, "sd / natural / corr from theta by the parameterisation maps;")

## Gaussian only: GLS fixed effects, lme4-style se, and the log-likelihood computed directly from the marginal
## MVN at the fitted covariance: V = Z Cov(b) Z' + sigma^2 I, Cov(b) = blockdiag over terms of
## kronecker(I_reps, VarCorr term matrix) (glmmTMB orders b term by term, group by group, levels within a group).
## ML: log N(y; X beta_hat, V); REML: that - 1/2 log|X'V^-1X| + (p/2) log(2 pi) (flat prior on beta integrated out).
gls_check <- function(m) tmb_gls(m, tmb_cov_b(m))

## print(VarCorr) only for small blocks (data D's 80 x 80 block prints 80 columns)
vc_print_small <- function(m) if (max(sapply(m$modelInfo$reStruc$condReStruc, `[[`, "blockSize")) <= 6)
  arr(capture.output(print(VarCorr(m)))) else NULL
tmb_block_d <- function(m, cap, call_text) tmb_block(m, cap, call_text, vc_print = vc_print_small)

## ---------------------------------------------------------------- cases

cases <- list(); failures <- list(); rows <- list()
DATA_FILE <- c(C = "distance_times.csv", D = "distance_space.csv")

## usable = FALSE when the reference fit still warns, is not pdHess, or `boundary` is set (judged from the output).
run_case <- function(case_id, call_text, data_id, notes = NULL, boundary = FALSE) {
  res <- tryCatch({
    f <- fit_with_refit(call_text)
    m <- f$m; cap <- f$cap; used_call <- f$used_call; control_used <- f$control_used; default_warn <- f$default_warn
    blk <- tmb_block_d(m, cap, used_call)
    usable <- length(cap$warnings) == 0 && isTRUE(blk$pdHess) && !boundary
    pol <- try_polish(polish, m)
    cases[[case_id]] <<- list(
      case_id = case_id, data = data_id, data_file = DATA_FILE[[data_id]],
      r_call = used_call, control_used = control_used, default_fit = default_warn,
      usable = usable, boundary = boundary, notes = notes,
      results = blk, newton_polish = pol)
    vc1 <- blk$varcorr[[1]]; nat <- vc1$natural
    rows[[case_id]] <<- tmb_summary_row(
      case_id, control_used, usable, blk, pol, cap, list(default = default_warn),
      sd = vc1$sd,
      natural = paste(sprintf("%s=%.8g", names(nat)[names(nat) != "note"], unlist(nat[names(nat) != "note"])),
                      collapse = " "),
      theta = paste(sprintf("%.8g", unlist(vc1$theta)), collapse = " "),
      corr12 = vc1$corr_shown[1, 2])
    "ok"
  }, error = function(e) { failures[[case_id]] <<- conditionMessage(e); paste("FAILED:", conditionMessage(e)) })
  cat(sprintf("%-12s %s\n", case_id, res))
}

CASE_NOTES <- list(
  ou_reml = paste("true values: sd 1, rate 0.5 (time scale 2; theta[2] = log 0.5 = -0.693), sigma 0.4, beta (1, 0.5).",
                  "Clean. VarCorr_print is glmmTMB's own print: 6 equal SDs and the full correlation matrix,",
                  "no rate. gls.logLik_direct (marginal MVN) agrees with logLik to 2e-13."),
  ou_poisson = paste("Laplace ML; true values: sd 0.5, rate 0.5 (theta[2] = -0.693), beta (0.3, 0.3). Clean;",
                     "yc's random effects are independent of y's (sd 0.5, same OU correlation)."),
  exp_reml = paste("true values: sd 0.8, scale 3 (theta[2] = log 3 = 1.0986), sigma 0.5, beta (2, 0.3). Clean.",
                   "One realisation of the spatial field (blockReps 1), so the intercept se is large and REML and",
                   "ML differ markedly (scale 3.09 vs 2.33, compare exp_ml)."),
  exp_ml = "ML version of exp_reml; true values: sd 0.8, scale 3, sigma 0.5, beta (2, 0.3). Clean.",
  gau_reml = paste("misspecified (the data are exponential); sd 0.8, sigma 0.5, beta (2, 0.3). Clean fit (no",
                   "warning, pdHess, max |gradient| 3.5e-6), but newton_polish status 'no descent step found':",
                   "the Gaussian correlation matrix is ill-conditioned (condition number 2.7e6) and the objective is",
                   "noisy at ~3e-11, above the predicted Newton gain (4e-13, step 1e-7); the fit is at the optimum",
                   "to that noise (gls.logLik_direct differs by 2e-11)."),
  mat_reml = paste("Matern; the data are exponential = Matern with smoothness 0.5 and range 3 (theta = (log 0.8,",
                   "log 3, log 0.5)). Clean; the estimate (range 0.91, smoothness 1.66) is far from the truth",
                   "because range and smoothness trade off, but the optimum is unique (mat_checks: five starts",
                   "reach it) and fixing smoothness = 0.5 reproduces exp_reml (mat_checks.kappa_half)."))

run_case("ou_reml", "glmmTMB(y ~ x + ou(times + 0 | subject), data = C, REML = TRUE)", "C",
         notes = CASE_NOTES$ou_reml)
run_case("ou_poisson", "glmmTMB(yc ~ x + ou(times + 0 | subject), family = poisson, data = C)", "C",
         notes = CASE_NOTES$ou_poisson)
run_case("exp_reml", "glmmTMB(y ~ z + exp(pos + 0 | group), data = D, REML = TRUE)", "D",
         notes = CASE_NOTES$exp_reml)
run_case("exp_ml", "glmmTMB(y ~ z + exp(pos + 0 | group), data = D, REML = FALSE)", "D",
         notes = CASE_NOTES$exp_ml)
run_case("gau_reml", "glmmTMB(y ~ z + gau(pos + 0 | group), data = D, REML = TRUE)", "D",
         notes = CASE_NOTES$gau_reml)
run_case("mat_reml", "glmmTMB(y ~ z + mat(pos + 0 | group), data = D, REML = TRUE)", "D",
         notes = CASE_NOTES$mat_reml)

## ---- mat checks: the Matern optimum from several starts, and Matern with smoothness fixed at 0.5 (map) against
## exp_reml (same model: matern(d, phi, 0.5) = exp(-d / phi)).
mat_checks <- tryCatch({
  starts <- list(c(log(0.8), log(3), log(0.5)), c(0, 1, 1), c(0, -1, -1), c(0, 0, 2), c(0, 2, -2))
  ms <- lapply(starts, function(st) {
    cap <- capture(glmmTMB(y ~ z + mat(pos + 0 | group), data = D, REML = TRUE, start = list(theta = st)))
    f <- cap$value
    list(start_theta = arr(st), logLik = as.numeric(logLik(f)), theta = arr(getME(f, "theta")),
         pdHess = f$sdr$pdHess, warnings = arr(cap$warnings))
  })
  capk <- capture(glmmTMB(y ~ z + mat(pos + 0 | group), data = D, REML = TRUE,
                          start = list(theta = c(0, 0, log(0.5))), map = list(theta = factor(c(1, 2, NA)))))
  fk <- capk$value; thk <- getME(fk, "theta")
  th_exp <- if (!is.null(cases$exp_reml)) as.numeric(unlist(cases$exp_reml$results$theta)) else c(NA, NA)
  ll_exp <- if (!is.null(cases$exp_reml)) cases$exp_reml$results$logLik else NA
  dd <- fk$modelInfo$reStruc$condReStruc[[1]]$dist
  list(
    note = paste("starts: refits of mat_reml with start = list(theta = start_theta); kappa_half: the same model",
                 "with theta[3] fixed at log(0.5) (map = list(theta = factor(c(1, 2, NA)))), compared with",
                 "exp_reml (identical model)."),
    starts = ms,
    starts_logLik_range = arr(range(sapply(ms, `[[`, "logLik"))),
    kappa_half = list(
      r_call = paste("glmmTMB(y ~ z + mat(pos + 0 | group), data = D, REML = TRUE, start = list(theta = c(0, 0,",
                     "log(0.5))), map = list(theta = factor(c(1, 2, NA))))"),
      logLik = as.numeric(logLik(fk)), theta = arr(thk), range = exp(thk[2]), smoothness = exp(thk[3]),
      warnings = arr(capk$warnings),
      logLik_minus_exp_reml = as.numeric(logLik(fk)) - ll_exp,
      range_minus_exp_reml_scale = exp(thk[2]) - exp(th_exp[2]),
      max_abs_diff_matern_half_vs_exp_corr_at_exp_reml_scale =
        max(abs(dist_corr("mat", c(0, th_exp[2], log(0.5)), list(dist = dd)) -
                dist_corr("exp", c(0, th_exp[2]), list(dist = dd))))))
}, error = function(e) list(failed = conditionMessage(e)))
cat("mat_checks done\n")

## ---------------------------------------------------------------- JSON

top <- list(
  description = paste("glmmTMB reference fits with distance-based random-effect covariances (ou in time; exp, gau,",
                      "mat in 2-D space) on simulated data, coordinates via numFactor."),
  script = "tests/data/r/distance_references.R", versions = versions,
  simulation = SIM_CODE,
  data = list(
    C = list(file = "distance_times.csv", nrow = nrow(C), columns = arr(c("y", "yc", "x", "time", "subject")),
             n_subjects = nlevels(C$subject), subject_levels = arr(levels(C$subject)),
             numFactor_call = "times <- numFactor(time)   (C$times <- numFactor(C$time))",
             times_levels = arr(levC), times_coords = arr(drop(pC)),
             model_matrix_columns = arr(paste0("times", levC)),
             truth = list(beta = arr(c(1, 0.5)), sd = 1, rate = 0.5, time_scale = 2, sigma = 0.4,
                          count = list(beta = arr(c(0.3, 0.3)), sd = 0.5, rate = 0.5, family = "poisson")),
             true_b = list(note = "rows = subjects s01..s50, columns = the 6 times", gaussian = mat(bC),
                           count = mat(bcC))),
    D = list(file = "distance_space.csv", nrow = nrow(D), columns = arr(c("y", "z", "x1", "x2", "site", "group")),
             n_sites = n_site, rows_per_site = n_rep,
             numFactor_call = "pos <- numFactor(x1, x2)   (D$pos <- numFactor(D$x1, D$x2))",
             group = "group = factor(1): one group, so each spatial term is a single 80 x 80 block (blockReps 1)",
             pos_levels = arr(levD), pos_coords = mat(pD), site_of_level = arr(site_of_level),
             level_order = paste("numFactor orders the levels by x2, ties by x1 (first coordinate fastest",
                                 "running), NOT by site: pos_levels[k] is site site_of_level[k]"),
             rounding = paste("x1, x2 drawn by runif(80, 0, 10) and rounded to 3 decimals before anything else,",
                              "so as.character(x) (numFactor's labels) has <= 5 significant digits and",
                              "parseNumLevels returns the CSV values exactly (checked)"),
             truth = list(beta = arr(c(2, 0.3)), sd = 0.8, scale = 3, sigma = 0.5),
             true_b = list(note = "b per site, in site order site01..site80", values = arr(bD)))),
  control_rule = paste("default glmmTMB control; a case whose default fit warns is refitted with control =",
                       REFIT_CONTROL, "(control_used; the default fit's warnings in default_fit). usable = no",
                       "warning in the reference fit, pdHess, and not at a boundary (boundary)."),
  parameterisation = PARAM_NOTES,
  cases = cases,
  mat_checks = mat_checks)
## written, then read back: valid JSON, numbers exact
back <- write_json_read_back(top, failures, file.path(OUT, "distance_references.json"), show_size = FALSE)
stopifnot(tmb_read_back_ok(back, cases), identical(unlist(back$data$D$pos_levels), levD))

## ---------------------------------------------------------------- summary

tab <- summary_table(rows)
print(tab[, c("case_id", "control", "usable", "logLik", "df", "sigma", "sd", "corr12", "conv", "pdHess", "grad",
              "theta_chk", "ll_direct", "polish_dll", "polish_dpar")], row.names = FALSE)
cat("\ntheta, natural-scale correlation parameters and fixef (se):\n")
for (i in seq_len(nrow(tab))) cat(sprintf("  %-11s theta: %s\n  %-11s %s\n  %-11s fixef: %s\n", tab$case_id[i],
                                          tab$theta[i], "", tab$natural[i], "", tab$fixef[i]))
print_warnings(tab, 11)
cat("\nmat_checks: starts logLik range", sprintf("%.10f", unlist(mat_checks$starts_logLik_range)),
    "| kappa = 0.5 fit: logLik", sprintf("%.10f", mat_checks$kappa_half$logLik),
    "minus exp_reml", sprintf("%.2e", mat_checks$kappa_half$logLik_minus_exp_reml),
    "; range minus exp scale", sprintf("%.2e", mat_checks$kappa_half$range_minus_exp_reml_scale),
    "; matern(0.5) vs exp corr", sprintf("%.2e", mat_checks$kappa_half$max_abs_diff_matern_half_vs_exp_corr_at_exp_reml_scale), "\n")
cat("\nnumFactor levels: times:", levC, "\n  pos (first 4):", head(levD, 4), "\n")
report_failures(failures)
