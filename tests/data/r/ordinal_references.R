## Reference fits of cumulative link mixed models (issue 22), from ordinal::clmm.
##
## Run from the repository root:   Rscript tests/data/r/ordinal_references.R
## Writes tests/data/wine.csv (ordinal::wine: rating 1..5 as integers, temp, contact, bottle, judge as
## strings; R's row order) and one JSON per case with the clmm call, its estimates (thresholds "1|2".., beta,
## the random-effect SDs / correlation), standard errors from clmm's Hessian, logLik and gradient.
## Each case is clmm's default fit: ucminf (nlminb for a vector-valued random term) stops at
## max |gradient| ~1e-5 (recorded), which places the estimates to ~1e-5 and the logLik to ~1e-10, well
## inside the 1e-4 / 1e-6 the comparison needs (a tighter gradTol ended no closer in a trial).
## Tested with R 4.2.2, ordinal 2022.11.16, ucminf 1.1.4, jsonlite 1.8.4 (Debian bookworm packages).

suppressPackageStartupMessages({ library(ordinal); library(jsonlite) })
OUT <- file.path("tests", "data")
stopifnot(dir.exists(OUT))
data(wine, package = "ordinal")
w <- data.frame(rating = as.integer(as.character(wine$rating)), temp = as.character(wine$temp),
                contact = as.character(wine$contact), bottle = as.character(wine$bottle),
                judge = as.character(wine$judge), response = wine$response)
write.csv(w, file.path(OUT, "wine.csv"), row.names = FALSE)

versions <- list(R = R.version.string, ordinal = as.character(packageVersion("ordinal")),
                 ucminf = as.character(packageVersion("ucminf")), jsonlite = as.character(packageVersion("jsonlite")))

case <- function(id, formula, link = "logit", nAGQ = 1, threshold = "flexible") {
  call <- sprintf("clmm(%s, data = wine, link = \"%s\", nAGQ = %d%s)", formula, link, nAGQ,
                  if (threshold == "flexible") "" else sprintf(", threshold = \"%s\"", threshold))
  m <- eval(parse(text = call))
  se <- sqrt(diag(vcov(m)))
  vc <- VarCorr(m)
  out <- list(
    case_id = id, dataset = "ordinal::wine", data_file = "wine.csv",
    data_note = "ordinal::wine (72 rows): rating 1..5 (ordered), temp (cold, warm), contact (no, yes), judge (1..9), bottle (1..8)",
    factor_levels = list(temp = c("cold", "warm"), contact = c("no", "yes"), judge = as.character(1:9),
                         bottle = as.character(1:8)),
    formula = formula, link = link, nAGQ = nAGQ, r_call = call, versions = versions,
    logLik = as.numeric(logLik(m)), max_abs_gradient = max(abs(m$gradient)),
    threshold = threshold,
    thresholds = if (threshold == "flexible")
      list(names = names(m$alpha), estimate = unname(m$alpha), se = unname(se[names(m$alpha)]))
    else  # the K - 1 cut points (Theta) and clmm's parameters (threshold.1, spacing) with their SEs
      list(names = c("1|2", "2|3", "3|4", "4|5"), estimate = unname(as.vector(m$Theta)),
           parameters = list(names = names(m$alpha), estimate = unname(m$alpha), se = unname(se[names(m$alpha)]))),
    beta = list(names = names(m$beta), estimate = unname(m$beta), se = unname(se[names(m$beta)])),
    re_sd = lapply(vc, function(v) unname(attr(v, "stddev"))),
    re_cor = lapply(vc, function(v) { r <- attr(v, "correlation"); if (is.null(r)) NULL else unname(r[lower.tri(r)]) }),
    note = "se: sqrt(diag(vcov(fit))), clmm's Hessian of the Laplace (or AGQ) log-likelihood")
  writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, pretty = TRUE, null = "null"), file.path(OUT, paste0(id, ".json")))
  cat(sprintf("%-24s logLik %.10f max|grad| %.1e\n", id, out$logLik, out$max_abs_gradient))
}

case("wine_clmm_logit", "rating ~ temp + contact + (1 | judge)")
case("wine_clmm_logit_agq10", "rating ~ temp + contact + (1 | judge)", nAGQ = 10)
case("wine_clmm_probit", "rating ~ temp + contact + (1 | judge)", link = "probit")
## clmm 2022.11.16 swaps the names of the two complementary log-log links: its link = "loglog" fits
## F(x) = 1 - exp(-exp(x)), P(y <= j) = F(theta_j - eta), which is clm's (and brms's) "cloglog" (clm's cloglog
## logLik is reproduced by clmm's loglog as the random-effect SD goes to 0; clmm's "cloglog" fit is another
## model, logLik -82.73). So the cloglog reference is clmm(link = "loglog"), and wine_clm_cloglog pins the
## convention without random effects.
case("wine_clmm_cloglog", "rating ~ temp + contact + (1 | judge)", link = "loglog")
m <- clm(rating ~ temp + contact, data = wine, link = "cloglog")
writeLines(toJSON(list(case_id = "wine_clm_cloglog", r_call = "clm(rating ~ temp + contact, data = wine, link = \"cloglog\")",
                       versions = versions, logLik = as.numeric(logLik(m)), max_abs_gradient = max(abs(m$gradient)),
                       thresholds = list(names = names(m$alpha), estimate = unname(m$alpha)),
                       beta = list(names = names(m$beta), estimate = unname(m$beta))),
                  auto_unbox = TRUE, digits = NA, pretty = TRUE), file.path(OUT, "wine_clm_cloglog.json"))
case("wine_clmm_slope", "rating ~ temp + contact + (1 + temp | judge)")
case("wine_clmm_crossed", "rating ~ temp + contact + (1 | judge) + (1 | bottle)")
case("wine_clmm_equidistant", "rating ~ temp + contact + (1 | judge)", threshold = "equidistant")
