"""AOS on Azure Functions: one package, three apps.

AOS_APP_ROLES (comma list of kernel, realm, mcp) picks the blueprints this app serves; unset, it
serves all three, which is how it runs locally on the embedded engine or under `func start`.
"""

import azure.durable_functions as df
import azure.functions as func

from kernel.roles import blueprints, selected_roles

app = df.DFApp(http_auth_level=func.AuthLevel.FUNCTION)

for role in selected_roles():
    for bp in blueprints(role):
        app.register_functions(bp)
