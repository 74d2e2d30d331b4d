# mgcv's GAM for the study's frame (tests/test_stats_r.py compares unetcap.analysis.gam to it).
# Usage: Rscript r_gam.R frame.csv outdir
# frame.csv: the analysis frame (DICE, ls, Family, Dataset, lr, reg). Writes gam.csv (term, edf,
# sp) for DICE ~ s(log(Dataset)) + the model x lr cells + reg, fitted by REML: the factor
# terms of unetcap.analysis.gam (f(ls) + f(Family) + te(ls, Family) + f(lr) +
# te(lr, ls, Family) + f(reg)) span the same means; the spline has as many basis functions
# as there are sizes, at most 10.
suppressPackageStartupMessages(library(mgcv))
args <- commandArgs(trailingOnly = TRUE)
d <- read.csv(args[1])
d$cell <- interaction(d$ls, d$Family, factor(d$lr), drop = TRUE)
d$regf <- factor(d$reg)
k <- min(10, length(unique(d$Dataset)))
m <- gam(DICE ~ s(log(Dataset), k = k) + cell + regf, data = d, method = "REML")
s <- summary(m)$s.table
write.csv(data.frame(term = rownames(s), edf = s[, "edf"], sp = m$sp), file.path(args[2], "gam.csv"),
          row.names = FALSE)
