// Censored GLMM (gaussian, brms-lognormal or brms-Weibull), optional hurdle, one scalar random intercept, for
// tests/data/r/lognormal_censored_references.R (cases censored_gaussian_sim, censored_weibull_sim, and the
// template cross-checks of lognormal_brms_sim / hurdle_lognormal_brms_sim).
//
// Linear predictor: eta_i = X_i beta + u_{g[i]},  u_j ~ N(0, sd^2) iid, sd = exp(theta)  (random in MakeADFun:
// Laplace approximation over u). Per row, with F / S = 1 - F the conditional CDF / survival function of y_i | u:
//   cens = 0 (none):      log f(y_i)
//   cens = 1 (left):      log F(y_i)                    = log P(Y <= y_i)
//   cens = 2 (right):     log S(y_i)                    = log P(Y > y_i)
//   cens = 3 (interval):  log(F(upper_i) - F(y_i))      = log P(y_i < Y <= upper_i)   (y_i = lower bound)
// (brms' cens(): "left", "right", "interval" with y2 = upper; upper is only read for cens = 3.)
// Families (betad is a length-1 vector, the log of the family parameter; brms' default log link for it):
//   family = 0, gaussian (identity link):  y | u ~ N(eta, sigma^2),  sigma = exp(betad)
//          F(y) = Phi((y - eta) / sigma)
//   family = 1, Weibull, brms' weibull(): mean mu = exp(eta) (log link), shape k = exp(betad),
//          scale lambda = mu / Gamma(1 + 1 / k);  f(y) = (k / lambda) (y / lambda)^(k - 1) exp(-(y / lambda)^k),
//          S(y) = exp(-(y / lambda)^k)  (density lines as tests/data/r/weibull_glmm.cpp)
//   family = 2, lognormal, brms' lognormal() (log-scale parameterisation, identity link on the log-scale mean):
//          log(y) | u ~ N(eta, sigma^2), sigma = exp(betad) (log-scale SD);
//          f(y) = dnorm(log y, eta, sigma) / y (Jacobian -log y included), F(y) = Phi((log y - eta) / sigma)
// Hurdle (DATA_INTEGER hurdle = 1, betazi of length 1; brms' hurdle_lognormal with hu ~ 1): rows with y == 0
// contribute log(hu), hu = plogis(betazi(0)); rows with y > 0 contribute log(1 - hu) + (the above). With
// hurdle = 0, betazi has length 0 and is not used.
//
// log Phi is the atomic log_pnorm1 below (R's pnorm(x, log.p = TRUE); derivative exp(log dnorm(x) - log Phi(x)),
// stable in both tails), so left / right censoring far in a tail does not underflow. Interval rows use
// logspace_sub(log F(upper), log F(lower)).
// The objective is the exact joint negative log density (all normalising constants), so -fn at the optimum of
// the Laplace-approximated marginal is the Laplace logLik on glmmTMB's scale. Parameter names follow glmmTMB
// (beta, betazi, betad, theta, b). The Laplace approximation is exact when every row is uncensored and the
// family is gaussian or lognormal (the joint density is then Gaussian in u).
#include <TMB.hpp>

namespace atomic {
TMB_ATOMIC_VECTOR_FUNCTION(
  // ATOMIC_NAME
  log_pnorm1
  ,
  // OUTPUT_DIM
  1
  ,
  // ATOMIC_DOUBLE: log Phi(x)
  ty[0] = Rmath::Rf_pnorm5(tx[0], 0, 1, 1, 1);
  ,
  // ATOMIC_REVERSE: d/dx log Phi(x) = phi(x) / Phi(x)
  px[0] = exp(Type(-0.5) * tx[0] * tx[0] - Type(0.91893853320467274178) - ty[0]) * py[0];
)
} // namespace atomic

template<class Type>
Type log_pnorm(Type x) {
  CppAD::vector<Type> tx(1);
  tx[0] = x;
  return atomic::log_pnorm1(tx)[0];
}

template<class Type>
Type objective_function<Type>::operator() ()
{
  DATA_VECTOR(y);        // response (lower bound for cens = 3); y > 0 for families 1 and 2 (y >= 0 with hurdle)
  DATA_VECTOR(upper);    // upper bound, used for cens = 3 only (any finite value elsewhere)
  DATA_IVECTOR(cens);    // 0 none, 1 left, 2 right, 3 interval
  DATA_MATRIX(X);        // fixed-effects design (n x p)
  DATA_IVECTOR(g);       // group index of each row, 0-based
  DATA_INTEGER(family);  // 0 gaussian, 1 Weibull (brms), 2 lognormal (brms)
  DATA_INTEGER(hurdle);  // 1: hurdle with constant hu (betazi of length 1), 0: none

  PARAMETER_VECTOR(beta);    // fixed effects of eta
  PARAMETER_VECTOR(betazi);  // length 1 (hurdle) or 0: logit(hu)
  PARAMETER_VECTOR(betad);   // length 1: log(sigma) (families 0, 2) or log(shape) (family 1)
  PARAMETER_VECTOR(theta);   // length 1: log(sd) of the random intercept
  PARAMETER_VECTOR(b);       // random intercepts u_j, one per group

  Type sd = exp(theta(0));
  Type jnll = 0;
  for (int j = 0; j < b.size(); j++) jnll -= dnorm(b(j), Type(0), sd, true);

  Type par_d = exp(betad(0));   // sigma or shape k
  Type log_gamma_term = lgamma(Type(1) + Type(1) / par_d);   // Weibull: log Gamma(1 + 1/k)

  vector<Type> eta = X * beta;
  for (int i = 0; i < y.size(); i++) {
    Type ll = 0;
    bool zero = (hurdle == 1) && (y(i) == Type(0));
    if (!zero) {
      Type eta_i = eta(i) + b(g(i));
      if (family == 0 || family == 2) {
        Type sigma = par_d;
        Type lo = (family == 0) ? y(i) : Type(log(y(i)));
        Type zl = (lo - eta_i) / sigma;
        if (cens(i) == 0) {
          ll = dnorm(lo, eta_i, sigma, true);
          if (family == 2) ll -= lo;                       // Jacobian: f(y) = dnorm(log y) / y
        } else if (cens(i) == 1) {
          ll = log_pnorm(zl);
        } else if (cens(i) == 2) {
          ll = log_pnorm(Type(-zl));
        } else {
          Type up = (family == 0) ? upper(i) : Type(log(upper(i)));
          Type zu = (up - eta_i) / sigma;
          ll = logspace_sub(log_pnorm(zu), log_pnorm(zl));
        }
      } else {
        Type k = par_d;
        Type log_lambda = eta_i - log_gamma_term;         // log scale = log(mu) - log Gamma(1 + 1/k)
        Type zl = log(y(i)) - log_lambda;                 // log(y / lambda)
        Type Hl = exp(k * zl);                            // cumulative hazard (y / lambda)^k
        if (cens(i) == 0) {
          ll = log(k) - log_lambda + (k - Type(1)) * zl - Hl;
        } else if (cens(i) == 1) {
          ll = logspace_sub(Type(0), Type(-Hl));          // log(1 - exp(-H))
        } else if (cens(i) == 2) {
          ll = -Hl;
        } else {
          Type Hu = exp(k * (log(upper(i)) - log_lambda));
          ll = logspace_sub(Type(-Hl), Type(-Hu));        // log(S(lower) - S(upper))
        }
      }
    }
    if (hurdle == 1) {
      Type logit_hu = betazi(0);
      if (zero) ll = -logspace_add(Type(0), -logit_hu);   // log(hu)
      else ll += -logspace_add(Type(0), logit_hu);        // + log(1 - hu)
    }
    jnll -= ll;
  }

  vector<Type> sdv(1); sdv(0) = sd;
  REPORT(sdv);
  REPORT(par_d);
  return jnll;
}
