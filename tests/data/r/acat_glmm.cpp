// Adjacent-category (acat) ordinal GLMM with a logit link (brms's acat family), one scalar random
// intercept per group. Used by tests/data/r/sequential_references.R (cases wine_acat_logit, acat_sim);
// neither lme4 nor glmmTMB 1.1.5 nor ordinal has this family.
//
//   y_i in 1..K,  eta_i = X_i beta + b_{g[i]}   (X has NO intercept column: the thresholds play its part)
//   P(y_i = k | b) = exp(s_ik) / sum_{m=1..K} exp(s_im),   s_i1 = 0,  s_ik = sum_{j<k} (eta_i - tau_j)
//   i.e. logit P(y = k + 1 | y in {k, k + 1}) = eta - tau_k  (k = 1..K-1)
//   tau_1..tau_{K-1} free (not constrained to be ordered)
//   b_j ~ N(0, sd^2) iid, sd = exp(theta)   (random in MakeADFun: Laplace approximation)
//
// The objective is the exact joint negative log density -log p(y, b) (all constants), so -fn at the optimum
// of the Laplace-approximated marginal is the Laplace logLik, on the same scale as clmm's / glmer's.
// Parameter names follow glmmTMB (beta, theta, b) plus tau for the thresholds.
#include <TMB.hpp>

template<class Type>
Type objective_function<Type>::operator() ()
{
  DATA_IVECTOR(y);       // responses, coded 0..K-1 (category k + 1)
  DATA_MATRIX(X);        // fixed-effects design without intercept (n x p)
  DATA_IVECTOR(g);       // group index of each row, 0-based

  PARAMETER_VECTOR(beta);   // fixed effects (p)
  PARAMETER_VECTOR(tau);    // thresholds (K - 1)
  PARAMETER_VECTOR(theta);  // length 1: log(sd) of the random intercept
  PARAMETER_VECTOR(b);      // random intercepts, one per group

  int K = tau.size() + 1;
  Type sd = exp(theta(0));

  Type jnll = 0;
  for (int j = 0; j < b.size(); j++) jnll -= dnorm(b(j), Type(0), sd, true);

  vector<Type> eta = X * beta;
  vector<Type> s(K);
  for (int i = 0; i < y.size(); i++) {
    Type eta_i = eta(i) + b(g(i));
    s(0) = Type(0);
    for (int k = 1; k < K; k++) s(k) = s(k - 1) + eta_i - tau(k - 1);
    Type lse = s(0);                                      // log sum_k exp(s_k), stable
    for (int k = 1; k < K; k++) lse = logspace_add(lse, s(k));
    jnll -= s(y(i)) - lse;
  }

  ADREPORT(sd);
  return jnll;
}
