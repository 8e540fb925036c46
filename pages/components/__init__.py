"""Streamlit pieces shared by several pages (not pages themselves)."""
