"""An app with a binding the engine does not implement."""

import azure.functions as func

app = func.FunctionApp()


@app.blob_trigger(arg_name="blob", path="inbox/{name}", connection="Storage")
def on_blob(blob: func.InputStream) -> None:
    pass
