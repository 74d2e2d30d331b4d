# R's numbers for the study's statistics (tests/test_stats_r.py compares unetcap.analysis to them).
# Usage: Rscript r_reference.R frame.csv outdir OLS_FORMULA GLM_FORMULA
# frame.csv: the analysis frame (DICE, ls, Family, Dataset, lr, reg, group). Writes into outdir:
#   ols.csv    lm(): term, estimate, std_error, t, p
#   anova.csv  car::Anova(type = 2): term, sum_sq, df, F, p
#   glm.csv    glm(gaussian(link = "log")): term, estimate, std_error, t, p, ci_low, ci_high
#              (Wald intervals on t with the residual df, as summary.glm's t and p use)
#   aic.csv    model, loglik, df (parameters counted, variance included), aic (AIC())
#   hsd.csv    TukeyHSD(aov(DICE ~ group)): group1, group2, diff (group2 - group1), lwr, upr, p_adj
suppressPackageStartupMessages(library(car))
args <- commandArgs(trailingOnly = TRUE)
d <- read.csv(args[1])
out <- args[2]
d$ls <- factor(d$ls, levels = sort(unique(d$ls)))
d$Family <- factor(d$Family, levels = sort(unique(d$Family)))
d$group <- factor(d$group)
put <- function(x, name) write.csv(x, file.path(out, name), row.names = FALSE)
coefs <- function(m, cols) {
  s <- summary(m)$coefficients
  data.frame(term = rownames(s), estimate = s[, 1], std_error = s[, 2], t = s[, 3], p = s[, 4])
}

ols <- lm(as.formula(args[3]), data = d)
put(coefs(ols), "ols.csv")

a <- Anova(ols, type = 2)
put(data.frame(term = rownames(a), sum_sq = a[["Sum Sq"]], df = a[["Df"]], F = a[["F value"]],
               p = a[["Pr(>F)"]]), "anova.csv")

# R's gaussian family has no starting values for a log link when some DICE is 0 (a diverged
# run): start every mean at the mean DICE. glm stops when the deviance stops changing, which
# happens while the coefficients still move by ~1e-8 (the deviance is flat at its minimum):
# restart from its coefficients until they stop changing, so that the comparison measures
# the estimator, not where each IRLS happened to stop.
glm_call <- function(...) glm(as.formula(args[4]), family = gaussian(link = "log"), data = d,
                              control = glm.control(epsilon = 1e-16, maxit = 100), ...)
glm_fit <- glm_call(mustart = rep(mean(d$DICE), nrow(d)))
for (i in 1:10) {
  before <- coef(glm_fit)
  glm_fit <- glm_call(start = before)
  if (max(abs(coef(glm_fit) - before) / pmax(abs(before), 1e-300)) < 1e-13) break
}
stopifnot(glm_fit$converged)
g <- coefs(glm_fit)
q <- qt(0.975, df.residual(glm_fit))
g$ci_low <- g$estimate - q * g$std_error
g$ci_high <- g$estimate + q * g$std_error
put(g, "glm.csv")

ic <- function(name, m) {
  l <- logLik(m)
  data.frame(model = name, loglik = as.numeric(l), df = attr(l, "df"), aic = AIC(m))
}
put(rbind(ic("OLS", ols), ic("GLM", glm_fit)), "aic.csv")

h <- TukeyHSD(aov(DICE ~ group, data = d))$group
pair <- do.call(rbind, strsplit(rownames(h), "-", fixed = TRUE))  # "B0 500-B0 200": group2-group1
put(data.frame(group1 = pair[, 2], group2 = pair[, 1], diff = h[, "diff"], lwr = h[, "lwr"],
               upr = h[, "upr"], p_adj = h[, "p adj"]), "hsd.csv")
