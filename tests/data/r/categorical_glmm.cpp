// Categorical (multinomial logit, baseline-category) GLMM: brms's `categorical` family with random effects.
// Used by tests/data/r/categorical_references.R (cases categorical_sim, categorical_sim_slope,
// categorical_sim_shared); neither lme4 nor glmmTMB 1.1.5 has this family (nnet::multinom has no random effects).
//
//   y_i in 0..K-1, category 0 the reference;  eta_{i,0} = 0,
//   eta_{i,c} = X_i beta_c + Z_i b_{c, g[i]}            c = 1..K-1 (X, Z the same for every category)
//   P(y_i = k | b) = exp(eta_{i,k}) / sum_j exp(eta_{i,j})
//
// Random effects: per group j the vector b_j = (b_{1,j}; ...; b_{K-1,j}) of length q = r (K - 1), r = ncol(Z),
// ordered CATEGORY-MAJOR (category 1's r terms, then category 2's, ...), b_j ~ N(0, Sigma) iid over groups,
//   Sigma = diag(sd) C diag(sd),   sd = exp(theta) (length q),
//   C from `shared` (DATA):
//     shared = 0: block diagonal, one unstructured r x r correlation block per category, the categories'
//                 blocks independent (brms's default for (x | g) in a categorical model); rho holds the K - 1
//                 blocks' r (r - 1) / 2 parameters, category 1's first;
//     shared = 1: one unstructured q x q correlation over all categories' terms (brms's (x | p | g));
//                 rho has q (q - 1) / 2 parameters.
//   An m x m correlation block from its m (m - 1) / 2 parameters: L unit lower triangular with the parameters
//   below the diagonal filled ROW-wise (L(1,0), L(2,0), L(2,1), ...), C = D^(-1/2) L L' D^(-1/2), D = diag(L L')
//   (the parameterisation of TMB's density::UNSTRUCTURED_CORR; for m = 2, corr = rho / sqrt(1 + rho^2)).
//
// The objective is the exact joint negative log density -log p(y, b) (all constants: the MVN prior via
// density::MVNORM_t), so -fn at the optimum of the Laplace-approximated marginal (MakeADFun(random = "b")) is
// the Laplace logLik. use_re = 0 drops the prior term (b and theta, rho then mapped to NA / zero): the
// fixed-effects-only multinomial logit likelihood, as nnet::multinom's.
// ADREPORT: sd (length q) and cor (the free correlations, in rho's order); REPORT: Corr (q x q), Sigma.
//
// spherical = 1 (DATA) switches to lme4's parameterisation, for fits on the boundary (an SD at 0, a correlation
// at +-1), where Sigma is singular and the one above diverges: b_j = L u_j with u_j ~ N(0, I) the random
// effects, L lower triangular with the same block structure as C, diag(L) = theta (any sign, NOT logged), the
// entries below the diagonal (within the blocks, row-wise) = rho; Sigma = L L'. The Laplace approximation is
// invariant under this linear change of the random effects, so the logLik is the same function of Sigma.
#include <TMB.hpp>

// m x m correlation matrix from its m (m - 1) / 2 unconstrained parameters (see above)
template<class Type>
matrix<Type> corr_from(vector<Type> th, int m)
{
  matrix<Type> L(m, m);
  L.setIdentity();
  int k = 0;
  for (int i = 0; i < m; i++)
    for (int j = 0; j < i; j++) { L(i, j) = th(k); k++; }
  matrix<Type> C = L * L.transpose();
  vector<Type> d(m);
  for (int i = 0; i < m; i++) d(i) = sqrt(C(i, i));
  for (int i = 0; i < m; i++)
    for (int j = 0; j < m; j++) C(i, j) = C(i, j) / (d(i) * d(j));
  return C;
}

template<class Type>
Type objective_function<Type>::operator() ()
{
  DATA_IVECTOR(y);        // responses coded 0..K-1, 0 = reference category
  DATA_MATRIX(X);         // fixed-effects design (n x p), the same for every non-reference category
  DATA_MATRIX(Z);         // random-effects design (n x r), the same for every non-reference category
  DATA_IVECTOR(g);        // group index of each row, 0-based
  DATA_INTEGER(shared);   // 0: independent correlation block per category; 1: one shared q x q block
  DATA_INTEGER(use_re);   // 1: random effects with their N(0, Sigma) prior; 0: fixed effects only
  DATA_INTEGER(spherical);// 0: log SDs + correlation parameters, b ~ N(0, Sigma); 1: b = L u, u ~ N(0, I)

  PARAMETER_MATRIX(beta); // p x (K - 1): column c - 1 is beta_c
  PARAMETER_VECTOR(theta);// q = r (K - 1), category-major: log SDs (spherical: the diagonal of L)
  PARAMETER_VECTOR(rho);  // correlation parameters (spherical: L below the diagonal), see above
  PARAMETER_MATRIX(b);    // q x (number of groups): column j is b_j (u_j if spherical), category-major

  int n = y.size();
  int Km1 = beta.cols();
  int r = Z.cols();
  int q = r * Km1;
  int ng = b.cols();

  vector<Type> sd(q);
  matrix<Type> Corr(q, q);
  Corr.setZero();
  vector<Type> cor(rho.size());
  matrix<Type> Sigma(q, q);
  matrix<Type> L(q, q);     // spherical only: b_j = L u_j
  L.setZero();
  // the blocks of C (and L): one q x q block if shared, else one r x r block per category
  int nblk = shared ? 1 : Km1;
  int m = shared ? q : r;
  int npb = m * (m - 1) / 2;   // correlation (or Cholesky) parameters per block

  if (spherical) {
    for (int c = 0; c < nblk; c++) {
      int k = c * npb;
      for (int i = 0; i < m; i++) {
        L(c * m + i, c * m + i) = theta(c * m + i);
        for (int j = 0; j < i; j++) { L(c * m + i, c * m + j) = rho(k); k++; }
      }
    }
    Sigma = L * L.transpose();
    for (int i = 0; i < q; i++) sd(i) = sqrt(Sigma(i, i));
    for (int i = 0; i < q; i++)
      for (int j = 0; j < q; j++) Corr(i, j) = Sigma(i, j) / (sd(i) * sd(j));
  } else {
    sd = exp(theta);
    for (int c = 0; c < nblk; c++) {
      vector<Type> th(npb);
      for (int k = 0; k < npb; k++) th(k) = rho(c * npb + k);
      matrix<Type> Cc = corr_from(th, m);
      for (int i = 0; i < m; i++)
        for (int j = 0; j < m; j++) Corr(c * m + i, c * m + j) = Cc(i, j);
    }
    for (int i = 0; i < q; i++)
      for (int j = 0; j < q; j++) Sigma(i, j) = sd(i) * Corr(i, j) * sd(j);
  }
  for (int c = 0; c < nblk; c++) {     // the free correlations, in rho's order
    int k = c * npb;
    for (int i = 0; i < m; i++)
      for (int j = 0; j < i; j++) { cor(k) = Corr(c * m + i, c * m + j); k++; }
  }

  Type jnll = 0;
  matrix<Type> eff(q, ng);              // the random effects b_j, category-major
  if (spherical) {
    eff = L * b;
    if (use_re)
      for (int j = 0; j < ng; j++)
        for (int i = 0; i < q; i++) jnll -= dnorm(b(i, j), Type(0), Type(1), true);
  } else {
    eff = b;
    if (use_re) {
      density::MVNORM_t<Type> mvn(Sigma);   // -log N(x; 0, Sigma), constants included
      for (int j = 0; j < ng; j++) {
        vector<Type> bj = b.col(j);
        jnll += mvn(bj);
      }
    }
  }

  matrix<Type> XB = X * beta;             // n x (K - 1)
  vector<Type> eta(Km1 + 1);
  for (int i = 0; i < n; i++) {
    eta(0) = Type(0);
    for (int c = 0; c < Km1; c++) {
      Type e = XB(i, c);
      for (int t = 0; t < r; t++) e += Z(i, t) * eff(c * r + t, g(i));
      eta(c + 1) = e;
    }
    Type lse = eta(0);                      // log sum_k exp(eta_k), stable
    for (int c = 1; c <= Km1; c++) lse = logspace_add(lse, eta(c));
    jnll -= eta(y(i)) - lse;
  }

  REPORT(Corr);
  REPORT(Sigma);
  ADREPORT(sd);
  ADREPORT(cor);
  return jnll;
}
