"""The paper's analysis of what JSIA generates and learns (Table 4, Figs. 4, 6, 7)."""
