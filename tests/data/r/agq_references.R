# glmer with adaptive Gauss-Hermite quadrature on cbpp, for bayesmix's fit(nAGQ=k) (issue 20, item 3).
# Run from the repository root: Rscript tests/data/r/agq_references.R > tests/data/cbpp_agq.json
suppressPackageStartupMessages(library(lme4))
fits <- list()
for (k in c(1, 5, 10, 25)) {
  m <- glmer(cbind(incidence, size - incidence) ~ period + (1 | herd), family = binomial, data = cbpp,
             nAGQ = k, control = glmerControl(tolPwrss = 1e-10))
  fits[[length(fits) + 1]] <- list(nAGQ = k, logLik = as.numeric(logLik(m)), deviance = deviance(m),
    fixef = list(names = names(fixef(m)), estimate = unname(fixef(m)),
                 se = unname(sqrt(diag(as.matrix(vcov(m)))))),
    theta = unname(getME(m, "theta")), sd = attr(VarCorr(m)$herd, "stddev")[[1]])
}
out <- list(case_id = "cbpp_agq", dataset = "cbpp",
  formula = "cbind(incidence, size - incidence) ~ period + (1 | herd)", family = "binomial",
  r_call = "glmer(formula, family = binomial, data = cbpp, nAGQ = k, control = glmerControl(tolPwrss = 1e-10))",
  note = paste("lme4's logLik for nAGQ > 1 omits the binomial coefficients (compare estimates, not logLik);",
               "its deviance is comparable across nAGQ"),
  versions = list(R = R.version.string, lme4 = as.character(packageVersion("lme4")),
                  Matrix = as.character(packageVersion("Matrix"))),
  fits = fits)
cat(jsonlite::toJSON(out, digits = NA, auto_unbox = TRUE, pretty = TRUE))
