// Weibull GLMM with a log link on the MEAN (the brms convention), one scalar random intercept.
// Used by tests/data/r/more_family_references.R (case weibull_sim); glmmTMB 1.1.5 has no Weibull family.
//
//   y_i | u ~ Weibull(shape k, scale lambda_i),  f(y) = (k / lambda) (y / lambda)^(k - 1) exp(-(y / lambda)^k)
//   mu_i = E[y_i | u] = exp(eta_i),  eta_i = X_i beta + u_{g[i]}
//   lambda_i = mu_i / Gamma(1 + 1 / k)       (brms: scale = mu / gamma(1 + 1 / shape))
//   k = exp(betad)                           (betad = log shape; brms' shape has a log link)
//   u_j ~ N(0, sd^2) iid, sd = exp(theta)    (random in MakeADFun: Laplace approximation)
//
// The objective is the exact joint negative log density (all constants), so -fn at the optimum of the
// Laplace-approximated marginal is the logLik on the same scale as glmmTMB's. Parameter names follow
// glmmTMB (beta, betad, theta, b) so that the JSON layout of the glmmTMB cases can be reused.
// With betad mapped to 0 (k = 1, Gamma(2) = 1, lambda = mu) the model is the exponential GLMM.
#include <TMB.hpp>

template<class Type>
Type objective_function<Type>::operator() ()
{
  DATA_VECTOR(y);        // responses, y > 0
  DATA_MATRIX(X);        // fixed-effects design (n x p)
  DATA_IVECTOR(g);       // group index of each row, 0-based

  PARAMETER_VECTOR(beta);   // fixed effects of log(mu)
  PARAMETER_VECTOR(betad);  // length 1: log(shape)
  PARAMETER_VECTOR(theta);  // length 1: log(sd) of the random intercept
  PARAMETER_VECTOR(b);      // random intercepts u_j, one per group

  Type k = exp(betad(0));
  Type sd = exp(theta(0));
  Type log_gamma_term = lgamma(Type(1) + Type(1) / k);   // log Gamma(1 + 1/k)

  Type jnll = 0;
  for (int j = 0; j < b.size(); j++) jnll -= dnorm(b(j), Type(0), sd, true);

  vector<Type> eta = X * beta;
  for (int i = 0; i < y.size(); i++) {
    Type eta_i = eta(i) + b(g(i));
    Type log_lambda = eta_i - log_gamma_term;     // log scale = log(mu) - log Gamma(1 + 1/k)
    Type z = log(y(i)) - log_lambda;             // log(y / lambda)
    jnll -= log(k) - log_lambda + (k - Type(1)) * z - exp(k * z);
  }

  vector<Type> sdv(1); sdv(0) = sd;
  REPORT(sdv);
  REPORT(k);
  return jnll;
}
