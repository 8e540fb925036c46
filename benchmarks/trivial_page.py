"""The trivial Streamlit page that benchmarks/pages.py times as its baseline: a title and a line of text."""

import streamlit as st

st.title("Trivial page")
st.write("Nothing else on this page.")
