// TMB template for tests/data/r/submodel_random_references.R: a one-factor GLMM with a random intercept in
// BOTH the conditional mean and the dispersion linear predictor (which glmmTMB 1.1.5 does not allow:
// "no random effects allowed in dispersion term").
//
// Model (i = 1..n rows, g(i) in 0..G-1 the group of row i; u and b are independent):
//   u_g ~ N(0, sd_u^2),  sd_u = exp(log_sd_u)        random intercept of the conditional mean
//   b_g ~ N(0, sd_b^2),  sd_b = exp(log_sd_b)        random intercept of the dispersion model
//   eta_i  = X_i beta   + u_g(i)                      X  = model.matrix(~ x)  (conditional mean)
//   etad_i = Xd_i betad + b_g(i)  (+ b only if disp_re = 1)   Xd = model.matrix(~ z)  (dispersion)
//   family = 0, gaussian:  y_i | u, b ~ N(eta_i, sigma_i^2),  log(sigma_i) = etad_i   (log SD scale;
//                          NB glmmTMB 1.1.5's own gaussian betad is log(sigma^2) = 2 log(sigma))
//   family = 1, nbinom2:   y_i | u, b ~ NB(mean mu_i = exp(eta_i), size theta_i), log(theta_i) = etad_i,
//                          Var = mu + mu^2 / theta (dnbinom_robust with log(var - mu) = 2 log(mu) - log(theta),
//                          exactly as glmmTMB 1.1.5 codes nbinom2)
// The objective is the joint negative log density
//   -log p(y, u, b) = -sum_i log f(y_i | u, b) - sum_g log N(u_g; 0, sd_u^2) - sum_g log N(b_g; 0, sd_b^2)
// with all normalising constants; u and b are declared random in MakeADFun(random = c("u", "b")), so
// obj$fn is the Laplace approximation of -log of the marginal likelihood and -obj$fn at the optimum is the
// Laplace log-likelihood. With disp_re = 0 the b terms are left out (b and log_sd_b must then be mapped
// off: map = list(b = factor(rep(NA, G)), log_sd_b = factor(NA)), random = "u"): that is glmmTMB's
// y ~ x + (1 | g), dispformula = ~ z model, used as the template check.
#include <TMB.hpp>

template<class Type>
Type objective_function<Type>::operator() ()
{
  DATA_VECTOR(y);
  DATA_MATRIX(X);
  DATA_MATRIX(Xd);
  DATA_IVECTOR(g);        // 0-based group index per row
  DATA_INTEGER(family);   // 0 = gaussian (identity link), 1 = nbinom2 (log link)
  DATA_INTEGER(disp_re);  // 1 = dispersion random intercept b_g present, 0 = absent

  PARAMETER_VECTOR(beta);
  PARAMETER_VECTOR(betad);
  PARAMETER(log_sd_u);
  PARAMETER(log_sd_b);
  PARAMETER_VECTOR(u);
  PARAMETER_VECTOR(b);

  Type sd_u = exp(log_sd_u);
  Type sd_b = exp(log_sd_b);
  Type nll = Type(0);

  nll -= sum(dnorm(u, Type(0), sd_u, true));
  if (disp_re == 1) nll -= sum(dnorm(b, Type(0), sd_b, true));

  vector<Type> eta = X * beta;
  vector<Type> etad = Xd * betad;
  for (int i = 0; i < y.size(); i++) {
    Type lp = eta(i) + u(g(i));
    Type ld = etad(i);
    if (disp_re == 1) ld += b(g(i));
    if (family == 0) {
      nll -= dnorm(y(i), lp, exp(ld), true);
    } else {
      nll -= dnbinom_robust(y(i), lp, Type(2) * lp - ld, true);
    }
  }

  ADREPORT(sd_u);
  ADREPORT(sd_b);
  REPORT(sd_u);
  REPORT(sd_b);
  return nll;
}
