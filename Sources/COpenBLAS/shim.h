// COpenBLAS: the parts of OpenBLAS swiftcam uses: CBLAS, the thread and core queries, and the
// one LAPACK routine (symmetric eigen-decomposition) that EigenCAM needs.
#include <cblas.h>

void dsyevd_(const char *jobz, const char *uplo, const int *n, double *a, const int *lda,
             double *w, double *work, const int *lwork, int *iwork, const int *liwork, int *info);
