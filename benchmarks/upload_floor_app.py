"""The floor of an upload's memory: one ``st.file_uploader`` whose file is read with getvalue().

``python -m benchmarks.upload_memory --app --floor`` uploads into it; whatever the server
holds above this is the dashboard's own.
"""

import streamlit as st

files = st.file_uploader("Upload", accept_multiple_files=True)
st.write("floor ready")
for file in files or []:
    data = file.getvalue()
    st.header(f"received {len(data)}", anchor=False)
