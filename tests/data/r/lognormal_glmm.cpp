// Lognormal GLMM (optionally with a hurdle for exact zeros), one scalar random intercept: a transcription
// of glmmTMB's own "lognormal" family (added in glmmTMB 1.1.8; lognormal hurdle models fixed in 1.1.9), for
// tests/data/r/more_family_references.R (cases lognormal_sim, hurdle_lognormal_sim), because the installed
// glmmTMB 1.1.5 has no lognormal family. The density lines are those of glmmTMB's src/glmmTMB.cpp
// (case lognormal_family and the "Add zero inflation" block).
//
// glmmTMB's lognormal is parameterised by the MEAN and SD on the DATA (response) scale:
//   mu_i = E[y_i | u] = exp(eta_i),  eta_i = X_i beta + u_{g[i]}        (log link on the mean of y)
//   phi  = SD(y_i | u) = exp(betad)  (= sigma(fit) in glmmTMB >= 1.1.8; dispformula = ~1)
//   on the log scale: log(y_i) ~ N(m_i, s_i^2), s_i^2 = log(1 + (phi / mu_i)^2), m_i = log(mu_i) - s_i^2 / 2,
//   so the log-scale SD s_i varies with mu_i (the data-scale SD phi is the constant).
// Hurdle (DATA_INTEGER hurdle = 1, betazi of length 1): P(y = 0) = pz = plogis(betazi); y > 0 has density
//   (1 - pz) * lognormal(y); zeros get log(pz) (glmmTMB: zero-inflation of a continuous family whose density
//   is -Inf at 0, i.e. a hurdle). hurdle = 0: betazi has length 0 and is not used (as glmmTMB's zi_flag).
// Random intercepts u_j ~ N(0, sd^2), sd = exp(theta) (random in MakeADFun: Laplace approximation).
// The objective is the exact joint negative log density (all constants).
#include <TMB.hpp>

template<class Type>
Type objective_function<Type>::operator() ()
{
  DATA_VECTOR(y);        // responses: y > 0, or y >= 0 with hurdle = 1
  DATA_MATRIX(X);        // fixed-effects design (n x p)
  DATA_IVECTOR(g);       // group index of each row, 0-based
  DATA_INTEGER(hurdle);  // 1: ziformula = ~1 (hurdle), 0: none

  PARAMETER_VECTOR(beta);    // fixed effects of log(mu)
  PARAMETER_VECTOR(betazi);  // length 1 (hurdle) or 0: logit P(y = 0)
  PARAMETER_VECTOR(betad);   // length 1: log(phi), phi = SD of y on the data scale
  PARAMETER_VECTOR(theta);   // length 1: log(sd) of the random intercept
  PARAMETER_VECTOR(b);       // random intercepts u_j, one per group

  Type phi = exp(betad(0));
  Type sd = exp(theta(0));

  Type jnll = 0;
  for (int j = 0; j < b.size(); j++) jnll -= dnorm(b(j), Type(0), sd, true);

  vector<Type> eta = X * beta;
  for (int i = 0; i < y.size(); i++) {
    Type mu = exp(eta(i) + b(g(i)));
    Type tmp_loglik;
    if (hurdle == 1 && y(i) == Type(0)) {
      tmp_loglik = -INFINITY;   // glmmTMB's zt_lik_zero: the lognormal density at an exact zero
    } else {
      Type s1 = logspace_add(Type(2) * (log(phi) - log(mu)), Type(0)); // log-scale variance log(1 + (phi/mu)^2)
      Type s2 = log(mu) - s1 / Type(2);                                // log-scale mean
      Type s3 = sqrt(s1);                                              // log-scale sd
      tmp_loglik = dnorm(log(y(i)), s2, s3, true) - log(y(i));
    }
    if (hurdle == 1) {
      Type logit_pz = betazi(0);
      Type log_pz   = -logspace_add(Type(0), -logit_pz);
      Type log_1mpz = -logspace_add(Type(0),  logit_pz);
      if (y(i) == Type(0)) {
        tmp_loglik = log_pz;    // = logspace_add(log_pz, log_1mpz + (-Inf)) in glmmTMB
      } else {
        tmp_loglik += log_1mpz;
      }
    }
    jnll -= tmp_loglik;
  }

  vector<Type> sdv(1); sdv(0) = sd;
  REPORT(sdv);
  REPORT(phi);
  return jnll;
}
