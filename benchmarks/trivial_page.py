"""The trivial Streamlit app that benchmarks/pages.py times as its baseline: two pages, each a title and a
line of text, in the same ``st.navigation`` frame as the dashboard (so a switch between them is the
baseline for a switch between dashboard pages)."""

import streamlit as st


def first() -> None:
    st.title("Trivial page")
    st.write("Nothing else on this page.")


def second() -> None:
    st.title("Second trivial page")
    st.write("Nothing else on this page either.")


st.navigation([st.Page(first, title="Trivial", default=True), st.Page(second, title="Second")]).run()
