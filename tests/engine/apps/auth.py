"""HTTP routes with every auth level, route parameters and constraints."""

import azure.functions as func

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)


@app.route(route="public/{name}/{id:int?}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def public(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(f"{req.route_params.get('name')}:{req.route_params.get('id')}:{req.params.get('q')}")


@app.route(route="keyed", methods=["POST"])
def keyed(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(req.get_body(), status_code=201, mimetype="application/json")


@app.route(route="admin/thing", auth_level=func.AuthLevel.ADMIN)
def admin_only(req: func.HttpRequest) -> str:
    return "admin ok"
