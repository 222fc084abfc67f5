"""Offline checks over the Bicep: it parses, and the parsed trees say what the platform needs.

No Bicep compiler runs here (CI runs `az bicep build`, `lint` and what-if); pycep-parser is the
syntax gate and the assertions below are the policy.
"""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest

from infra_checks import (APP_ROLES, INFRA, REPO, app_bindings, bicep_files, body, default, parse, resources_of_type,
                          tree, walk)

ROLE_IDS = {
    "storageBlobDataOwner": "b7e6dc6d-f1e8-4753-8033-0f276bb0955b",
    "storageQueueDataContributor": "974c5e8b-45b9-4653-ba55-5f855dd0fb88",
    "storageTableDataContributor": "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3",
    "serviceBusDataSender": "69a216fc-b8fb-44d8-bc22-1f3c2cd27a39",
    "serviceBusDataReceiver": "4f6d3b9b-027b-4f4c-9142-0e5a2a2247e0",
    "keyVaultSecretsUser": "4633458b-17de-408a-b874-0445c86b69e6",
    "durableTaskDataContributor": "0ad04412-c4d5-4796-b79c-f76d14c8d402",
    "monitoringMetricsPublisher": "3913510d-42f4-4e42-8a64-420c390055eb",
}
COGNITIVE_SERVICES_OPENAI_USER = "5e0bd9bd-7b93-4f28-af87-19fc36ad61bd"
AZUREML_DATA_SCIENTIST = "f6c7c914-8db3-469d-8ca1-694a8f32e121"
SECRET_MARKERS = ("listKeys(", "listkeys(", "AccountKey=", "SharedAccessKey", "DefaultEndpointsProtocol", "listConnectionStrings(")
#: App settings that are named like connection strings but carry no secret (asserted below).
IDENTITY_CONNECTION_STRINGS = {"APPLICATIONINSIGHTS_CONNECTION_STRING", "DURABLE_TASK_SCHEDULER_CONNECTION_STRING"}
#: Settings the apps get in Azure that kernel/settings.py does not declare yet (asked for in the infra report).
PENDING_KERNEL_SETTINGS: set[str] = set()
#: Where the code names the tables and blob containers it writes (the embedded engine and the
#: adapters keep their own, and the engine is not deployed).
CODE_PACKAGES = ("kernel", "realm_of_agents", "mcp_servers")
_STORE_NAME = re.compile(r'^\s*[A-Z_]*(TABLE|CONTAINER)[A-Z_]*\s*=\s*"([A-Za-z0-9-]+)"|\b(table|container)\w*: str = "([A-Za-z0-9-]+)"',
                         re.MULTILINE)


def _settings_union() -> dict[str, object]:
    union = body(tree("main.bicep")["modules"]["functionApps"])["params"]["appSettings"]["function"]
    assert union["type"] == "union"
    return union["parameters"]


def app_settings(role: str | None = None) -> dict[str, object]:
    """The app settings main.bicep gives an app: the common object, ``role``'s own (every role's
    when None) and the Durable Task Scheduler additions."""
    parameters = _settings_union()
    assert set(parameters) == {"arg_1", "arg_2", "arg_3", "arg_4"}
    assert parameters["arg_2"] == {"operator": {"type": "index_accessor", "operands": {"operand_1": "roleSettings", "operand_2": "role"}}}
    assert parameters["arg_3"] == "modelEndpointSettings"
    per_role = tree("main.bicep")["variables"]["roleSettings"]["value"]
    own = per_role[role] if role else {k: v for settings in per_role.values() for k, v in settings.items()}
    dts = parameters["arg_4"]["operator"]["operands"]
    assert dts["condition"] == "useDurableTaskScheduler" and dts["false_value"] == {}
    return {**parameters["arg_1"], **own, **dts["true_value"]}


def _role_definition(assignment: dict) -> str:
    return repr(body(assignment)["properties"]["roleDefinitionId"])


@pytest.mark.parametrize("path", bicep_files(), ids=lambda p: str(p.relative_to(INFRA)))
def test_every_bicep_file_parses(path) -> None:
    parsed = parse(path)
    assert parsed.get("resources") or parsed.get("modules"), f"{path} declares nothing"


def test_every_module_reference_exists_and_api_versions_are_ga() -> None:
    for path in bicep_files():
        parsed = parse(path)
        for name, module in parsed.get("modules", {}).items():
            assert (path.parent / module["detail"]["path"]).is_file(), f"{path.name}: module {name}"
        for name, resource in parsed.get("resources", {}).items():
            assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", resource["api_version"]), f"{path.name}: {name} uses {resource['api_version']}"


def test_exactly_three_flex_consumption_function_apps_one_per_role() -> None:
    main = tree("main.bicep")
    assert default(main, "pythonVersion") == "3.11"
    assert main["variables"]["appRoles"]["value"] == APP_ROLES
    assert resources_of_type(main, "Microsoft.Web/sites") == {}
    apps = main["modules"]["functionApps"]
    assert apps["detail"]["path"] == "modules/functionapp.bicep"
    assert apps["config"]["loop_type"]["detail"]["array_name"] == "appRoles"
    assert app_settings()["AOS_APP_ROLES"] == "role"

    module = tree("modules/functionapp.bicep")
    (site,) = resources_of_type(module, "Microsoft.Web/sites").values()
    (plan,) = resources_of_type(module, "Microsoft.Web/serverfarms").values()
    assert plan["config"]["sku"] == {"name": "FC1", "tier": "FlexConsumption"}
    config = site["config"]
    assert config["kind"] == "functionapp,linux"
    assert config["identity"]["type"] == "UserAssigned"
    flex = config["properties"]["functionAppConfig"]
    assert flex["runtime"] == {"name": "python", "version": "pythonVersion"}
    storage = flex["deployment"]["storage"]
    assert storage["type"] == "blobContainer"
    assert storage["authentication"]["type"] == "UserAssignedIdentity"
    assert config["properties"]["httpsOnly"] is True
    assert config["properties"]["siteConfig"]["minTlsVersion"] == "1.2"
    # Every other Bicep file declares no function app of its own: three apps in total.
    others = [p for p in bicep_files() if p.name != "functionapp.bicep"]
    assert all(not resources_of_type(parse(p), "Microsoft.Web/sites") for p in others)


def test_each_app_has_its_own_user_assigned_identity() -> None:
    main = tree("main.bicep")
    identities = main["resources"]["identities"]
    assert identities["type"] == "Microsoft.ManagedIdentity/userAssignedIdentities"
    assert identities["config"]["loop_type"]["detail"]["array_name"] == "appRoles"
    params = body(main["modules"]["functionApps"])["params"]
    assert params["identityId"]["operator"]["operands"]["operand_1"]["operator"]["operands"] == {
        "operand_1": "identities", "operand_2": "i"}


def test_app_settings_use_identity_based_connections_only() -> None:
    settings = app_settings()
    assert settings["AzureWebJobsStorage__credential"] == "managedidentity"
    assert settings["ServiceBusConnection__credential"] == "managedidentity"
    for name in ("AzureWebJobsStorage__accountName", "AzureWebJobsStorage__clientId",
                 "ServiceBusConnection__fullyQualifiedNamespace", "ServiceBusConnection__clientId",
                 "AOS_KEY_VAULT_URL", "AZURE_CLIENT_ID", "APPLICATIONINSIGHTS_AUTHENTICATION_STRING"):
        assert name in settings, name
    assert "AzureWebJobsStorage" not in settings and "ServiceBusConnection" not in settings
    assert settings["AOS_STORAGE"] == "azure" and settings["AOS_MESSAGING"] == "azure"
    assert settings["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"].endswith(";Authorization=AAD")
    for name, value in settings.items():
        if re.search(r"connection_?string$", name, re.IGNORECASE):
            assert name in IDENTITY_CONNECTION_STRINGS, f"{name} looks like a connection string"
        assert not re.search(r"(API_?KEY|SECRET|PASSWORD)$", name, re.IGNORECASE), f"{name}: keys come from Key Vault"
        text = repr(value)
        assert not any(marker in text for marker in SECRET_MARKERS), name
    assert "Authentication=ManagedIdentity" in settings["DURABLE_TASK_SCHEDULER_CONNECTION_STRING"]
    assert "AccountKey" not in settings["DURABLE_TASK_SCHEDULER_CONNECTION_STRING"]


def test_application_insights_connection_string_carries_no_usable_key() -> None:
    (insights,) = resources_of_type(tree("modules/monitoring.bicep"), "Microsoft.Insights/components").values()
    assert insights["config"]["properties"]["DisableLocalAuth"] is True


def test_no_secret_is_read_or_written_anywhere_in_the_templates() -> None:
    for path in [*bicep_files(), INFRA / "main.bicepparam"]:
        text = path.read_text()
        for marker in SECRET_MARKERS:
            assert marker not in text, f"{path.relative_to(REPO)} contains {marker}"
        assert "connectionStrings" not in text, f"{path.relative_to(REPO)} sets site connection strings"


def test_aos_settings_are_ones_the_kernel_declares() -> None:
    from kernel.settings import SETTINGS

    aos = {name for name in app_settings() if name.startswith("AOS_") or "__" in name and not name.startswith("AzureFunctionsJobHost")}
    assert aos - set(SETTINGS) - PENDING_KERNEL_SETTINGS <= {
        "AzureWebJobsStorage__credential", "AzureWebJobsStorage__clientId",
        "ServiceBusConnection__credential", "ServiceBusConnection__clientId",
    }


def test_storage_account_is_locked_down_with_the_containers_and_tables() -> None:
    storage = tree("modules/storage.bicep")
    (account,) = resources_of_type(storage, "Microsoft.Storage/storageAccounts").values()
    properties = account["config"]["properties"]
    assert properties["minimumTlsVersion"] == "TLS1_2"
    assert properties["allowBlobPublicAccess"] is False
    assert properties["allowSharedKeyAccess"] is False
    assert properties["supportsHttpsTrafficOnly"] is True
    assert default(storage, "skuName") == "Standard_ZRS"
    containers = resources_of_type(storage, "Microsoft.Storage/storageAccounts/blobServices/containers")
    assert {body(c)["name"] for c in containers.values()} == {"container", "agentConfigsContainerName"}
    assert {c["config"]["loop_type"]["detail"]["array_name"] for c in containers.values() if "loop_type" in c["config"]} == {
        "deploymentContainerNames", "dataContainerNames"}
    assert all(body(c)["properties"]["publicAccess"] == "None" for c in containers.values())
    (tables,) = resources_of_type(storage, "Microsoft.Storage/storageAccounts/tableServices/tables").values()
    assert tables["config"]["loop_type"]["detail"]["array_name"] == "tableNames"
    main = tree("main.bicep")
    params = body(main["modules"]["storage"])["params"]
    assert params["dataContainerNames"] == "dataContainers" and params["tableNames"] == "dataTables"
    assert default(main, "agentConfigsContainerName") == "agent-configs"


def _names_in_code() -> tuple[set[str], set[str]]:
    tables: set[str] = set()
    containers: set[str] = set()
    for package in CODE_PACKAGES:
        for path in (REPO / package).rglob("*.py"):
            if {"engine", "adapters"} & set(path.relative_to(REPO).parts):
                continue
            for match in _STORE_NAME.finditer(path.read_text()):
                kind, name = (match.group(1), match.group(2)) if match.group(2) else (match.group(3), match.group(4))
                (tables if kind.upper() == "TABLE" else containers).add(name)
    return tables, containers


def test_storage_declares_every_table_and_container_the_code_writes() -> None:
    from kernel.governance.audit import AuditLog

    tables, containers = _names_in_code()
    assert {"turns", "audit", "toolcalls"} <= tables and {"turns", "toolcalls"} <= containers, "the scan is broken"
    tables.add(AuditLog(tables=None).index_table)  # derived from its table name
    main = tree("main.bicep")
    declared_tables = set(main["variables"]["dataTables"]["value"])
    declared_containers = set(main["variables"]["dataContainers"]["value"])
    assert tables == declared_tables, (
        f"add to / remove from dataTables in infra/main.bicep: missing {sorted(tables - declared_tables)}, "
        f"unused {sorted(declared_tables - tables)}")
    assert containers == declared_containers, (
        f"add to / remove from dataContainers in infra/main.bicep: missing {sorted(containers - declared_containers)}, "
        f"unused {sorted(declared_containers - containers)}")


def test_service_bus_and_key_vault_are_locked_down() -> None:
    (namespace,) = resources_of_type(tree("modules/servicebus.bicep"), "Microsoft.ServiceBus/namespaces").values()
    assert namespace["config"]["properties"]["disableLocalAuth"] is True
    assert namespace["config"]["properties"]["minimumTlsVersion"] == "1.2"
    (vault,) = resources_of_type(tree("modules/keyvault.bicep"), "Microsoft.KeyVault/vaults").values()
    properties = vault["config"]["properties"]
    assert properties["enableRbacAuthorization"] is True
    assert properties["enableSoftDelete"] is True and properties["enablePurgeProtection"] is True


def test_durable_backend_is_the_task_scheduler_or_azure_storage() -> None:
    main = tree("main.bicep")
    backend = main["parameters"]["durableBackend"]
    assert backend["default"] == "DurableTaskScheduler"
    allowed = [d for d in backend["decorators"] if d["type"] == "allowed"]
    assert allowed and set(allowed[0]["argument"]) == {"DurableTaskScheduler", "AzureStorage"}
    assert main["modules"]["durableTask"]["config"]["condition"] == "useDurableTaskScheduler"
    settings = app_settings()
    assert settings["AzureFunctionsJobHost__extensions__durableTask__storageProvider__type"] == "azureManaged"
    dts = tree("modules/durabletask.bicep")
    assert resources_of_type(dts, "Microsoft.DurableTask/schedulers")
    (hubs,) = resources_of_type(dts, "Microsoft.DurableTask/schedulers/taskHubs").values()
    assert hubs["config"]["loop_type"]["detail"]["array_name"] == "taskHubNames"


def test_each_app_has_its_own_task_hub_and_the_kernel_reaches_the_realms() -> None:
    main = tree("main.bicep")
    hubs = main["variables"]["taskHubs"]["value"]["function"]
    assert hubs["type"] == "toObject" and hubs["parameters"]["arg_1"] == "appRoles"
    assert hubs["parameters"]["arg_3"]["detail"]["expression"] == "${taskHubNamePrefix}${role}"
    assert default(main, "taskHubNamePrefix") == "aos"
    settings = app_settings()
    assert settings["AOS_TASK_HUB"] == {"operator": {"type": "index_accessor", "operands": {"operand_1": "taskHubs", "operand_2": "role"}}}
    assert settings["AOS_REALM_TASK_HUB"] == {"operator": {"type": "property_accessor", "operands": {"operand_1": "taskHubs", "operand_2": "realm"}}}
    # The scheduler gets a hub per app.
    assert body(main["modules"]["durableTask"])["params"]["taskHubNames"]["loop_type"]["detail"]["array_name"] == "appRoles"
    # host.json names the hub from AOS_TASK_HUB; the kernel's durable clients are bound to the realm's hub
    # (tool answers for turns) or to its own (workflow runs).
    host = json.loads((REPO / "host.json").read_text())
    assert host["extensions"]["durableTask"]["hubName"] == "%AOS_TASK_HUB%"
    clients = {(name, b["name"]): b.get("taskHub") for name, bindings in app_bindings("kernel").items()
               for b in bindings if b["type"] == "durableClient"}
    assert clients[("deliver_tool_responses", "client")] == "%AOS_REALM_TASK_HUB%", clients
    assert set(clients.values()) == {"%AOS_REALM_TASK_HUB%", None}, clients
    assert all(b.get("taskHub") is None for bindings in app_bindings("realm").values()
               for b in bindings if b["type"] == "durableClient"), "the realm's clients use its own hub"
    # Data-plane rights: each identity on its own hub, the kernel's also on the realm's.
    by_role = {role: [hub["operator"]["operands"]["operand_2"] for hub in hubs_]
               for role, hubs_ in main["variables"]["taskHubsByRole"]["value"].items()}
    assert by_role == {"kernel": ["kernel", "realm"], "realm": ["realm"], "mcp": ["mcp"]}
    granted = body(main["modules"]["roleAssignments"])["params"]["taskHubNames"]["operator"]["operands"]
    assert granted["condition"] == "useDurableTaskScheduler" and granted["false_value"] == []
    assert granted["true_value"]["operator"]["operands"] == {"operand_1": "taskHubsByRole", "operand_2": "role"}
    roles = tree("modules/roles.bicep")
    contributor = resources_of_type(roles, "Microsoft.Authorization/roleAssignments")["durableTaskContributor"]
    assert contributor["config"]["loop_type"]["detail"]["array_name"] == "taskHubNames"
    assert "taskHubs" in repr(body(contributor)["scope"])
    (existing_hubs,) = resources_of_type(roles, "Microsoft.DurableTask/schedulers/taskHubs", existing=True).values()
    assert existing_hubs["config"]["loop_type"]["detail"]["array_name"] == "taskHubNames"
    # With the Azure Storage backend the hubs live in the account: queue, table and blob roles there.
    assignments = resources_of_type(roles, "Microsoft.Authorization/roleAssignments")
    assert all(body(assignments[name])["scope"] == "storage" for name in ("queueContributor", "tableContributor", "blobOwner"))


def _duration(text: str) -> timedelta:
    hours, minutes, seconds = (int(part) for part in text.split(":"))
    return timedelta(hours=hours, minutes=minutes, seconds=seconds)


def test_lock_durations_come_from_the_topology_and_cover_a_whole_tool_call() -> None:
    from kernel.config.models import Timeouts
    from kernel.topology import GATEWAY_SUBSCRIPTION, LOCK_SECONDS

    main = tree("main.bicep")
    bus = tree("modules/servicebus.bicep")
    assert "lockDuration" not in bus["parameters"], "lock durations are per subscription, from the topology"
    assert body(bus["resources"]["subscriptionResources"])["properties"]["lockDuration"] == {
        "operator": {"type": "property_accessor", "operands": {"operand_1": "sub", "operand_2": "lockDuration"}}}
    assert "lock_duration_seconds" in repr(main["variables"]["subscriptions"])
    assert LOCK_SECONDS[GATEWAY_SUBSCRIPTION] == 300 == max(LOCK_SECONDS.values())
    # The mcp app renews a request's lock, and lets its function run, for the longest tool call the
    # MCP server configs allow (start-up plus call); the other apps keep host.json's five minutes.
    limits = {name: next(m.le for m in field.metadata if hasattr(m, "le")) for name, field in Timeouts.model_fields.items()}
    longest_call = timedelta(seconds=limits["startup_seconds"] + limits["call_seconds"])
    mcp = tree("main.bicep")["variables"]["roleSettings"]["value"]["mcp"]
    assert mcp == {"AzureFunctionsJobHost__extensions__serviceBus__maxAutoLockRenewalDuration": "toolCallMaxDuration",
                   "AzureFunctionsJobHost__functionTimeout": "toolCallMaxDuration",
                   "AOS_HISTORY_RETENTION_DAYS": "historyRetentionDays"}  # the tool-call claims' retention
    assert _duration(default(main, "toolCallMaxDuration")) >= longest_call
    host = json.loads((REPO / "host.json").read_text())["extensions"]["serviceBus"]
    assert _duration(host["maxAutoLockRenewalDuration"]) >= timedelta(seconds=max(LOCK_SECONDS.values()))


def test_the_realm_and_mcp_apps_get_the_history_retention_from_a_parameter() -> None:
    from realm_of_agents import retention

    main = tree("main.bicep")
    realm = main["variables"]["roleSettings"]["value"]["realm"]
    assert realm == {retention.SETTING: "historyRetentionDays"}
    assert main["variables"]["roleSettings"]["value"]["mcp"][retention.SETTING] == "historyRetentionDays"
    assert retention.retention({retention.SETTING: default(main, "historyRetentionDays")}) == retention.retention({})


def test_model_endpoints_are_reached_by_the_realm_identity_with_entra_id_only() -> None:
    main = tree("main.bicep")
    assert main["variables"]["realmIndex"]["value"]["function"]["parameters"] == {"string_to_search": "appRoles", "string_to_find": "realm"}
    realm_principal = {"operand_1": "identities", "operand_2": "realmIndex"}
    openai = main["modules"]["openAiAccess"]
    assert openai["detail"]["path"] == "modules/openai-access.bicep"
    assert openai["config"]["condition"]["operator"]["type"] == "not"
    assert "azureOpenAiAccountId" in repr(openai["config"]["condition"])
    assert repr(realm_principal)[1:-1] in repr(body(openai)["params"]["principalId"])
    assert default(main, "azureOpenAiAccountId") == ""
    ml = main["modules"]["machineLearningAccess"]
    assert ml["detail"]["path"] == "modules/ml-access.bicep" and ml["config"]["condition"] == "deployMachineLearning"
    assert repr(realm_principal)[1:-1] in repr(body(ml)["params"]["principalId"])
    assert default(main, "machineLearningScoringRoleId") == AZUREML_DATA_SCIENTIST

    (assignment,) = resources_of_type(tree("modules/openai-access.bicep"), "Microsoft.Authorization/roleAssignments").values()
    assert body(assignment)["scope"] == "account" and "openAiUserRoleId" in _role_definition(assignment)
    assert tree("modules/openai-access.bicep")["variables"]["openAiUserRoleId"]["value"] == COGNITIVE_SERVICES_OPENAI_USER
    (scoring,) = resources_of_type(tree("modules/ml-access.bicep"), "Microsoft.Authorization/roleAssignments").values()
    assert body(scoring)["scope"] == "workspace" and "roleDefinitionId" in _role_definition(scoring)
    # Nothing grants a model role to the kernel or mcp identities.
    for path in bicep_files():
        if path.name not in ("main.bicep", "openai-access.bicep", "ml-access.bicep"):
            text = path.read_text()
            assert COGNITIVE_SERVICES_OPENAI_USER not in text and AZUREML_DATA_SCIENTIST not in text, path.name
    # Endpoint URLs are parameters; keys never are (the endpoint configs name them ${secret:...}).
    assert default(main, "modelEndpointSettings") == {}
    assert app_settings()["AOS_INFERENCE_ENDPOINT"] == "inferenceEndpointUrl"
    assert app_settings()["AOS_INFERENCE_MODEL"] == "inferenceModel"
    assert "AOS_INFERENCE_API_KEY" not in app_settings()


def test_dropped_configs_reach_the_apps_by_polling_the_container() -> None:
    """kernel/config/drop.py mirrors AOS_CONFIG_CONTAINER at most every 30 s when configs are read,
    and the realm's config sync timer forces it every five minutes. No function is a blob or Event
    Grid trigger, so the Bicep needs (and declares) no Event Grid subscription."""
    main = tree("main.bicep")
    assert app_settings()["AOS_CONFIG_CONTAINER"] == "agentConfigsContainerName"
    functions = app_bindings("")
    triggers = {b["type"] for bindings in functions.values() for b in bindings if b["direction"] == "IN"}
    assert not triggers & {"blobTrigger", "eventGridTrigger"}, "a blob trigger on Flex needs an Event Grid subscription in infra/"
    (sync,) = [b for b in functions["agent_config_sync"] if b["type"] == "timerTrigger"]
    assert sync["runOnStartup"] is True
    for path in bicep_files():
        assert "Microsoft.EventGrid" not in path.read_text(), path.name
    assert body(main["modules"]["storage"])["params"]["agentConfigsContainerName"] == "agentConfigsContainerName"


def test_role_assignments_exist_for_each_identity_with_least_privilege_scopes() -> None:
    main = tree("main.bicep")
    roles_module = main["modules"]["roleAssignments"]
    assert roles_module["config"]["loop_type"]["detail"]["array_name"] == "appRoles"
    principal = body(roles_module)["params"]["principalId"]
    assert "identities" in repr(principal) and "principalId" in repr(principal)
    assert "roleAssignments" in repr(body(main["modules"]["functionApps"]).get("dependsOn"))

    roles = tree("modules/roles.bicep")
    assert roles["variables"]["roleIds"]["value"] == ROLE_IDS
    assignments = resources_of_type(roles, "Microsoft.Authorization/roleAssignments")
    used = {re.search(r"roleIds', 'operand_2': '(\w+)'", _role_definition(a)).group(1) for a in assignments.values()}
    assert used == set(ROLE_IDS)
    scopes = {name: repr(body(a)["scope"]) for name, a in assignments.items()}
    # Service Bus roles are granted on topics, never on the whole namespace.
    assert "sendTopicResources" in scopes["busSender"] and "receiveTopicResources" in scopes["busReceiver"]
    assert "namespace" not in scopes["busSender"] + scopes["busReceiver"]
    # Storage queues only for the Azure Storage Durable backend.
    assert "useDurableTaskScheduler" in repr(assignments["queueContributor"]["config"]["condition"])
    for path in bicep_files():
        for assignment in resources_of_type(parse(path), "Microsoft.Authorization/roleAssignments").values():
            assert body(assignment)["properties"]["principalType"] == "ServicePrincipal", path.name
    # No broad control-plane roles anywhere (Owner, Contributor, User Access Administrator).
    for path in bicep_files():
        for broad in ("8e3af657-a8ff-443c-a75c-2fe8c4bcb635", "b24988ac-6180-42a0-ab88-20f7382dd24c",
                      "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9"):
            assert broad not in path.read_text()


def test_outputs_name_the_apps_and_their_endpoints() -> None:
    outputs = tree("main.bicep")["outputs"]
    for role in APP_ROLES:
        assert f"{role}AppName" in outputs and f"{role}Endpoint" in outputs
    assert {"storageAccountName", "serviceBusNamespace", "keyVaultUri", "agentConfigsContainerName",
            "taskHubNames"} <= set(outputs)


def test_dev_bicepparam_uses_main_and_only_declared_parameters() -> None:
    text = (INFRA / "main.bicepparam").read_text()
    assert re.search(r"^using './main.bicep'$", text, re.MULTILINE)
    declared = set(tree("main.bicep")["parameters"])
    used = set(re.findall(r"^param (\w+)\s*=", text, re.MULTILINE))
    assert used and used <= declared, used - declared
    required = {name for name, p in tree("main.bicep")["parameters"].items() if p["default"] is None}
    assert required <= used, required - used
    # Model endpoint settings there are URLs or names, never keys.
    block = re.search(r"^param modelEndpointSettings = \{(.*?)^\}", text, re.MULTILINE | re.DOTALL)
    for name, value in re.findall(r"^\s*(\w+):\s*'([^']*)'", block.group(1) if block else "", re.MULTILINE):
        assert not re.search(r"KEY|SECRET|PASSWORD|TOKEN", name, re.IGNORECASE), name
        assert value == "" or re.match(r"^https://", value) or re.fullmatch(r"[\w.-]+", value), (name, value)


def test_no_parsed_value_hides_a_secret() -> None:
    for path in bicep_files():
        for node in walk(parse(path)):
            if isinstance(node, str):
                assert not any(marker in node for marker in SECRET_MARKERS), (path.name, node)


def test_audit_anchor_blobs_are_kept_immutable_for_a_year_by_default() -> None:
    """kernel/governance/anchor.py writes each anchor once; WORM retention makes rewriting them impossible."""
    from kernel.governance.anchor import CONTAINER

    storage = tree("modules/storage.bicep")
    assert default(storage, "auditAnchorContainerName") == CONTAINER
    assert default(storage, "auditAnchorRetentionDays") >= 365
    [policy] = resources_of_type(storage, "Microsoft.Storage/storageAccounts/blobServices/containers/immutabilityPolicies").values()
    settings = body(policy)
    target = resources_of_type(storage, "Microsoft.Storage/storageAccounts/blobServices/containers", existing=True)
    assert target[settings["parent"]]["config"]["name"] == "auditAnchorContainerName"
    assert settings["properties"] == {"immutabilityPeriodSinceCreationInDays": "auditAnchorRetentionDays",
                                      "allowProtectedAppendWrites": False}
    assert CONTAINER in json.dumps(tree("main.bicep")["variables"]["dataContainers"])
