"""The tabs of the web app: each module builds one `gr.Tab` from the shared AppContext."""
