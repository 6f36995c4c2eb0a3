## Nakagawa's R² and the ICC (issue 23) from performance::r2_nakagawa and performance::icc, with the variance
## components insight::get_variance reports, for the models tests/test_r2.py fits.
##
## Run from the repository root:   Rscript tests/data/r/r2_references.R   (writes tests/data/r2_references.json)
## The fits are tight so that the references are the optimum's numbers, not the optimiser's stopping point:
## lmer REML (its default converges to ~1e-6 relative), glmer logit with tolPwrss = 1e-10 and bobyqa at
## rhoend 1e-10; the probit model by glmmTMB (its Laplace uses the observed information, as ours: glmer's probit
## Laplace uses the expected information and is a slightly different approximation).
## Tested with R 4.2.2, lme4 1.1-31, glmmTMB 1.1.5, performance 0.10.2, insight 0.19.0, jsonlite 1.8.4 (Debian
## bookworm packages).

suppressPackageStartupMessages({library(lme4); library(glmmTMB); library(performance); library(insight); library(jsonlite)})
versions <- list(R = R.version.string, lme4 = as.character(packageVersion("lme4")),
                 glmmTMB = as.character(packageVersion("glmmTMB")),
                 performance = as.character(packageVersion("performance")),
                 insight = as.character(packageVersion("insight")))
out <- list(versions = versions)
rec <- function(id, call) {
  m <- eval(parse(text = call))
  r <- r2_nakagawa(m); i <- icc(m); v <- get_variance(m)
  out[[id]] <<- list(r_call = call, marginal = unname(r$R2_marginal), conditional = unname(r$R2_conditional),
    icc_adjusted = unname(i$ICC_adjusted), icc_unadjusted = unname(i$ICC_unadjusted),
    var_fixed = unname(v$var.fixed), var_random = unname(v$var.random), var_residual = unname(v$var.residual))
  cat(sprintf("%-22s R2m %.8f R2c %.8f ICC %.8f\n", id, r$R2_marginal, r$R2_conditional, i$ICC_adjusted))
}
data(sleepstudy); data(cbpp)
rec("sleepstudy_slope", "lmer(Reaction ~ Days + (Days | Subject), sleepstudy)")
rec("sleepstudy_intercept", "lmer(Reaction ~ Days + (1 | Subject), sleepstudy)")
rec("cbpp_logit", paste0("glmer(cbind(incidence, size - incidence) ~ period + (1 | herd), cbpp, family = binomial, ",
                         "control = glmerControl(tolPwrss = 1e-10, optimizer = 'bobyqa', optCtrl = list(rhoend = 1e-10)))"))
rec("cbpp_probit", "glmmTMB(cbind(incidence, size - incidence) ~ period + (1 | herd), cbpp, family = binomial(link = 'probit'))")
writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, pretty = TRUE), file.path("tests", "data", "r2_references.json"))
