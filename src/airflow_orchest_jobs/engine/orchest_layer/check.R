# The R side of Orchest's base-kernel-r: IRkernel (the "ir" kernel) and reticulate,
# through which R steps use the orchest SDK (orchest <- reticulate::import("orchest")).
missing <- Filter(function(p) !requireNamespace(p, quietly = TRUE), c("IRkernel", "reticulate"))
if (length(missing)) {
    cat("orchest layer: the base image lacks the R package(s)", missing,
        "(Debian/Ubuntu: r-cran-irkernel, r-cran-reticulate)\n")
    quit(status = 1)
}
orchest <- reticulate::import("orchest")
cat("orchest layer: R", R.version$major, R.version$minor, "imports the orchest SDK from",
    reticulate::py_config()$python, "\n")
