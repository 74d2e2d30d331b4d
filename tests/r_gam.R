# mgcv's fits of the GAM of unetcap.analysis.gam, term for term (tests/test_stats_r.py compares).
# Usage: Rscript r_gam.R frame.csv terms.csv knots.csv outdir
# frame.csv: the analysis frame (DICE, ls, Family, Dataset, lr, reg). terms.csv: per GAM term its
# label (term), its mgcv smooth (the spline on log(Dataset) a P-spline, bs = "ps", on pygam's
# knots, knots.csv, with pygam's order and second-order difference penalty; a factor or an
# interaction of factors a ridge-penalised one-hot term, bs = "re", as pygam's f() and te()) and
# lam, pygam's weight on that penalty. Writes gam.csv: term, method, edf, sp and the fit's gcv
# per term and for the whole model (term "total"), for three smoothing selections: "fixed"
# (pygam's λ: the same penalised fit), "GCV" (mgcv's GCV.Cp with gamma = 1.4, pygam's
# criterion, optimised over every sp at once) and "REML".
suppressPackageStartupMessages(library(mgcv))
args <- commandArgs(trailingOnly = TRUE)
d <- read.csv(args[1])
terms <- read.csv(args[2], stringsAsFactors = FALSE)
knots <- list(lD = read.csv(args[3])$knot)
d$lD <- log(d$Dataset)
for (v in c("ls", "Family", "lr", "reg")) d[[v]] <- factor(d[[v]])
form <- as.formula(paste("DICE ~", paste(terms$smooth, collapse = " + ")))
GAMMA <- 1.4  # pygam's GCV counts each edf 1.4 times (its default gamma, as mgcv's gamma argument)
# mgcv divides each penalty by its S.scale before weighting it by sp: pygam's λ is sp / S.scale
quiet <- function(expr) suppressWarnings(expr)  # "basis dimension is larger than number of unique covariates"
setup <- quiet(gam(form, data = d, knots = knots, fit = FALSE))
scale <- sapply(setup$smooth, function(s) if (is.null(s$S.scale)) 1 else s$S.scale)
fits <- list(
  fixed = quiet(gam(form, data = d, knots = knots, sp = terms$lam * scale)),
  GCV = quiet(gam(form, data = d, knots = knots, method = "GCV.Cp", gamma = GAMMA)),
  REML = quiet(gam(form, data = d, knots = knots, method = "REML"))
)
rows <- do.call(rbind, lapply(names(fits), function(method) {
  m <- fits[[method]]
  edf <- sapply(m$smooth, function(s) sum(m$edf[s$first.para:s$last.para]))
  sp <- if (method == "fixed") terms$lam * scale else m$sp  # a fit at given sp does not keep them
  n <- nrow(d)
  gcv <- n * sum(residuals(m)^2) / (n - GAMMA * sum(m$edf))^2  # GCV.Cp's score, also for REML's fit
  rbind(data.frame(term = terms$term, method = method, edf = edf, sp = unname(sp), gcv = gcv),
        data.frame(term = "total", method = method, edf = sum(m$edf), sp = NA, gcv = gcv))
}))
write.csv(rows, file.path(args[4], "gam.csv"), row.names = FALSE)
