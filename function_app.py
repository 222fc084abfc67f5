"""AOS on Azure Functions: one package, three apps.

AOS_APP_ROLES (comma list of kernel, realm, mcp) picks the blueprints this app serves; unset, it
serves all three, which is how it runs locally on the embedded engine or under `func start`.
"""

import azure.durable_functions as df

from kernel.governance.access import http_auth_level
from kernel.roles import blueprints, selected_roles

# Function keys checked by the host, or (AOS_AUTH=entra) Entra ID tokens checked by each route.
app = df.DFApp(http_auth_level=http_auth_level())

for role in selected_roles():
    for bp in blueprints(role):
        app.register_functions(bp)
