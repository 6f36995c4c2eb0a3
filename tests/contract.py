"""The JSON contract's keys, in order, as other tools read them (issue: core, item 8)."""

CONTRACT = [
    "formula",
    "family",
    "link",
    "method",
    "nobs",
    "ngrps",
    "fixef",
    "sigma",
    "family_params",
    "varcorr",
    "logLik",
    "REMLcrit",
    "AIC",
    "BIC",
    "isSingular",
    "ranef",
    "diagnostics",
    "converged",
    "messages",
    "time_s",
]
