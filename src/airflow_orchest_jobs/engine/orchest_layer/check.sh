#!/bin/sh
# Checks an Orchest-like environment image once, at build time (airflow-orchest-jobs
# environments build): one line naming what the base image lacks, then exit 1.
# Usage: sh check.sh LANGUAGE BASE_IMAGE
language=$1
base=$2
here=$(dirname "$0")
fail() {
    echo "orchest layer: the base image $base $1" >&2
    exit 1
}

/opt/conda/bin/python -c 'import orchest, nbclient, nbconvert, ipykernel, pyarrow' ||
    fail "cannot import the orchest SDK, nbclient, nbconvert and ipykernel with its python3 (see above)"
/opt/conda/bin/python -c 'from jupyter_client.kernelspec import KernelSpecManager as K; K().get_kernel_spec("python3")' ||
    fail "has no usable python3 Jupyter kernel (see above)"

case $language in
    r)
        command -v Rscript >/dev/null 2>&1 ||
            fail "has no Rscript: orchest/base-kernel-r needs R (Debian/Ubuntu: r-base-core, r-cran-irkernel, r-cran-reticulate)"
        Rscript "$here/check.R" ||
            fail "cannot give R the IRkernel and the orchest SDK through reticulate (see above)"
        ;;
    julia)
        command -v julia >/dev/null 2>&1 ||
            fail "has no julia: orchest/base-kernel-julia needs Julia (and IJulia for notebooks)"
        ;;
    javascript)
        command -v node >/dev/null 2>&1 ||
            fail "has no node: orchest/base-kernel-javascript needs Node.js (and ijavascript for notebooks)"
        ;;
esac
exit 0
