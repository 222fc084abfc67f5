"""Offline checks over the Bicep: it parses, and the parsed trees say what the platform needs.

No Bicep compiler runs here (CI runs `az bicep build`, `lint` and what-if); pycep-parser is the
syntax gate and the assertions below are the policy.
"""

from __future__ import annotations

import re

import pytest

from infra_checks import APP_ROLES, INFRA, REPO, bicep_files, body, default, parse, resources_of_type, tree, walk

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
SECRET_MARKERS = ("listKeys(", "listkeys(", "AccountKey=", "SharedAccessKey", "DefaultEndpointsProtocol", "listConnectionStrings(")
#: App settings that are named like connection strings but carry no secret (asserted below).
IDENTITY_CONNECTION_STRINGS = {"APPLICATIONINSIGHTS_CONNECTION_STRING", "DURABLE_TASK_SCHEDULER_CONNECTION_STRING"}
#: Settings the apps get in Azure that kernel/settings.py does not declare yet (asked for in the infra report).
PENDING_KERNEL_SETTINGS: set[str] = set()


def app_settings() -> dict[str, object]:
    """The app settings main.bicep gives every app: the base object and the DTS-only additions."""
    union = body(tree("main.bicep")["modules"]["functionApps"])["params"]["appSettings"]["function"]
    assert union["type"] == "union"
    base = union["parameters"]["arg_1"]
    dts = union["parameters"]["arg_2"]["operator"]["operands"]["true_value"]
    return {**base, **dts}


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
    sites_in_main = resources_of_type(main, "Microsoft.Web/sites")
    assert sites_in_main == {}
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
    containers = resources_of_type(storage, "Microsoft.Storage/storageAccounts/blobServices/containers")
    assert {body(c)["name"] for c in containers.values()} == {
        "container", "agentConfigsContainerName", "turnsContainerName"}
    assert all(body(c)["properties"]["publicAccess"] == "None" for c in containers.values())
    tables = resources_of_type(storage, "Microsoft.Storage/storageAccounts/tableServices/tables")
    assert {t["config"]["name"] for t in tables.values()} == {"turnsTableName", "auditTableName"}
    main = tree("main.bicep")
    assert default(main, "agentConfigsContainerName") == "agent-configs"
    assert default(main, "turnsContainerName") == "turns"
    assert default(main, "turnsTableName") == "turns"
    assert default(main, "auditTableName") == "audit"


def test_service_bus_key_vault_and_durable_task_scheduler() -> None:
    (namespace,) = resources_of_type(tree("modules/servicebus.bicep"), "Microsoft.ServiceBus/namespaces").values()
    assert namespace["config"]["properties"]["disableLocalAuth"] is True
    (vault,) = resources_of_type(tree("modules/keyvault.bicep"), "Microsoft.KeyVault/vaults").values()
    assert vault["config"]["properties"]["enableRbacAuthorization"] is True
    dts = tree("modules/durabletask.bicep")
    assert resources_of_type(dts, "Microsoft.DurableTask/schedulers")
    assert resources_of_type(dts, "Microsoft.DurableTask/schedulers/taskHubs")
    main = tree("main.bicep")
    backend = main["parameters"]["durableBackend"]
    assert backend["default"] == "DurableTaskScheduler"
    allowed = [d for d in backend["decorators"] if d["type"] == "allowed"]
    assert allowed and set(allowed[0]["argument"]) == {"DurableTaskScheduler", "AzureStorage"}
    assert main["modules"]["durableTask"]["config"]["condition"] == "useDurableTaskScheduler"
    settings = app_settings()
    assert settings["AzureFunctionsJobHost__extensions__durableTask__storageProvider__type"] == "azureManaged"
    assert settings["AOS_TASK_HUB"] == "taskHubName"


def test_machine_learning_is_optional_and_inference_endpoint_is_a_parameter() -> None:
    main = tree("main.bicep")
    assert default(main, "deployMachineLearning") is False
    assert main["modules"]["machineLearning"]["config"]["condition"] == "deployMachineLearning"
    assert default(main, "inferenceEndpointUrl") == ""
    assert app_settings()["AOS_INFERENCE_ENDPOINT"] == "inferenceEndpointUrl"


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
    used = {re.search(r"roleIds', 'operand_2': '(\w+)'", repr(body(a)["properties"]["roleDefinitionId"])).group(1)
            for a in assignments.values()}
    assert used == set(ROLE_IDS)
    scopes = {name: repr(body(a)["scope"]) for name, a in assignments.items()}
    # Service Bus roles are granted on topics, never on the whole namespace.
    assert "sendTopicResources" in scopes["busSender"] and "receiveTopicResources" in scopes["busReceiver"]
    assert "namespace" not in scopes["busSender"] + scopes["busReceiver"]
    assert scopes["durableTaskContributor"] == "'taskHub'"
    # Storage queues only for the Azure Storage Durable backend.
    assert "useDurableTaskScheduler" in repr(assignments["queueContributor"]["config"]["condition"])
    for assignment in assignments.values():
        assert body(assignment)["properties"]["principalType"] == "ServicePrincipal"
    # No broad control-plane roles anywhere (Owner, Contributor, User Access Administrator).
    for path in bicep_files():
        for broad in ("8e3af657-a8ff-443c-a75c-2fe8c4bcb635", "b24988ac-6180-42a0-ab88-20f7382dd24c",
                      "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9"):
            assert broad not in path.read_text()


def test_outputs_name_the_apps_and_their_endpoints() -> None:
    outputs = tree("main.bicep")["outputs"]
    for role in APP_ROLES:
        assert f"{role}AppName" in outputs and f"{role}Endpoint" in outputs
    assert {"storageAccountName", "serviceBusNamespace", "keyVaultUri", "agentConfigsContainerName"} <= set(outputs)


def test_dev_bicepparam_uses_main_and_only_declared_parameters() -> None:
    text = (INFRA / "main.bicepparam").read_text()
    assert re.search(r"^using './main.bicep'$", text, re.MULTILINE)
    declared = set(tree("main.bicep")["parameters"])
    used = set(re.findall(r"^param (\w+)\s*=", text, re.MULTILINE))
    assert used and used <= declared, used - declared
    required = {name for name, p in tree("main.bicep")["parameters"].items() if p["default"] is None}
    assert required <= used, required - used


def test_no_parsed_value_hides_a_secret() -> None:
    for path in bicep_files():
        for node in walk(parse(path)):
            if isinstance(node, str):
                assert not any(marker in node for marker in SECRET_MARKERS), (path.name, node)
