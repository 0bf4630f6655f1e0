from django.urls import path

from infra_inventory import apis

urlpatterns = [
    path("hardware-skus", apis.HardwareSkuListApi.as_view(), name="hardware-skus"),
    path("datacenters", apis.DatacenterListApi.as_view(), name="datacenters"),
    path("power-contracts", apis.PowerContractListApi.as_view(), name="power-contracts"),
    path("clusters", apis.ClusterListApi.as_view(), name="clusters"),
    path("leases", apis.LeaseListApi.as_view(), name="leases"),
    path("grid-intensities", apis.GridIntensityListApi.as_view(), name="grid-intensities"),
    path("deployments", apis.DeploymentListApi.as_view(), name="deployments"),
    path("power-readings", apis.PowerReadingListApi.as_view(), name="power-readings"),
]
