//! The OpenAPI 3.1 document, generated from the handlers' annotations.

use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

use crate::dto::*;
use crate::error::{ErrorBody, ErrorDetail};
use crate::{crisis, handlers, overview, situations, units};

#[derive(OpenApi)]
#[openapi(
    info(title = "Beffroi API", description = "Safe-city hypervision: incidents, devices, observations, live stream."),
    paths(
        handlers::healthz, handlers::clock, handlers::metrics, handlers::login, handlers::logout,
        handlers::list_incidents, handlers::get_incident, handlers::act,
        handlers::territory, handlers::sites_geojson, handlers::list_devices, handlers::get_device,
        handlers::post_observations, handlers::post_device_observations, handlers::rejections,
        handlers::rules, handlers::stream,
        overview::me, overview::overview, crate::handover::handover,
        crate::handover::write_note, crate::handover::read_note,
        crate::shelving::list_shelved, crate::shelving::shelve, crate::shelving::unshelve,
        crate::alarm_health::alarm_health,
        units::list_units, units::get_unit, units::set_unit_status,
        situations::list, situations::get, situations::act, situations::split,
        situations::merge, situations::acknowledge_many,
        crisis::open_crisis, crisis::list_crises, crisis::get_crisis, crisis::crisis_log,
        crisis::crisis_level, crisis::crisis_role, crisis::close_crisis, crisis::crisis_report,
        crate::console::map_clusters, crate::console::communes_geojson,
        crate::security::quarantine, crate::security::release, crate::security::quarantine_view,
        crate::crowd::crowd, crate::unmask::unmask,
        crate::unmask::list_requests, crate::unmask::approve, crate::unmask::refuse_request,
        crate::unmask::reveal,
    ),
    components(schemas(
        crate::handlers::ClockDto, IncidentDto, IncidentDetailDto, SopDto, SopStepDto, LogEntryDto, MessageDto, ActionRequest,
        LoginRequest, LoginResponse, RejectionDto, IngestResponse, IngestLogged, StoredRejectionDto,
        DeviceDto, DeviceDetailDto, ObservationDto, TerritoryDto, CommuneDto, RuleDto,
        ErrorBody, ErrorDetail,
        overview::MeDto, overview::ScopeDto, overview::GrantDto, overview::OverviewDto, overview::SeverityCounts,
        crate::handover::HandoverDto, crate::handover::HandoverLogDto,
        crate::handover::HandoverNoteDto, crate::handover::NoteReadDto,
        crate::handover::IncidentGroupDto, crate::handover::OverdueStepDto,
        crate::handover::EngagedUnitDto, crate::handover::HandoverCrisisDto,
        crate::handover::HandoverEventDto, crate::handover::HandoverNoteRequest,
        crate::shelving::ShelfDto, crate::shelving::ShelvedDto, crate::shelving::ShelveRequest,
        crate::shelving::UnshelveRequest, crate::shelving::ShelfActDto,
        crate::alarm_health::AlarmHealthDto, crate::alarm_health::ThresholdsDto,
        units::UnitDto, units::UnitDetailDto, units::MissionDto, units::UnitStatusRequest,
        situations::SituationDto, crate::alarm_health::SituationHealthDto, situations::SituationIncidentDto, situations::SituationLogDto,
        situations::SituationDetailDto, situations::SplitRequest, situations::MergeRequest,
        situations::BulkAcknowledgeRequest, situations::BulkAcknowledgeDto, situations::BulkRefusal,
        crisis::CrisisSummaryDto, crisis::CrisisDto, crisis::CrisisRoleDto, crisis::CrisisLogDto,
        crisis::OpenCrisisRequest, crisis::CrisisLogRequest, crisis::CrisisLevelRequest,
        crisis::CrisisRoleRequest, crisis::CloseCrisisRequest,
        crate::console::MapClustersDto, crate::console::MapFeatureDto, crate::console::MapGeometryDto,
        crate::console::MapPropertiesDto, crate::console::MapClusterPropsDto, crate::console::MapDevicePropsDto,
        crate::console::MapStateCountsDto,
        crate::dto::TechniqueDto, crate::security::QuarantineRequest,
        crate::security::QuarantineActDto, crate::security::QuarantineViewDto,
        crate::crowd::CrowdDto, crate::crowd::CrowdZoneDto, crate::crowd::CrowdBucketDto,
        crate::crowd::PeopleCount, crate::unmask::UnmaskRequest, crate::unmask::UnmaskResponse,
        crate::unmask::UnmaskPendingResponse, crate::unmask::UnmaskRequestDto,
        crate::unmask::UnmaskRequestsDto,
        crate::dto::TriggerDto,
    )),
    modifiers(&Bearer),
)]
struct ApiDoc;

struct Bearer;

impl utoipa::Modify for Bearer {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    doc.merge(<crate::events::EventsApi as OpenApi>::openapi());
    doc.merge(<crate::privacy::PrivacyApi as OpenApi>::openapi());
    doc.merge(<crate::cap::CapApi as OpenApi>::openapi());
    doc.merge(<crate::federation::FederationApi as OpenApi>::openapi());
    doc.merge(<crate::retention::PrivacyApi as OpenApi>::openapi());
    doc
}
