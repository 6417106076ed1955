"""The report, from run records only: collation (collate), published numbers (published), claims
and their statistics (claims, stats), the evidence they make (evidence), tables, plots and prose
(tables, plots, article), the files written (outputs), what notebooks show (display), the
built HTML page (build), and the landing page over every report (site)."""
