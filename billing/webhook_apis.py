"""Integrations register their webhook endpoints and read their delivery log (admin keys)."""

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.generics import get_object_or_404
from rest_framework.response import Response
from rest_framework.views import APIView

from billing.models import WebhookDelivery, WebhookEndpoint
from billing.services.webhook_destinations import WebhookUrlRefused, webhook_url_check
from config.api import NextPagination


class WebhookEndpointSerializer(serializers.ModelSerializer):
    secret = serializers.CharField(min_length=16, max_length=128, write_only=True,
                                   help_text="Signs every delivery (HMAC-SHA256); never shown again.")
    events = serializers.ListField(child=serializers.ChoiceField(choices=WebhookEndpoint.EVENTS), required=False,
                                   default=list, help_text="Event types to receive; empty for all.")

    class Meta:
        model = WebhookEndpoint
        fields = ["id", "url", "secret", "events", "active", "created_at"]
        read_only_fields = ["id", "created_at"]
        extra_kwargs = {"url": {"help_text": "An https:// URL of a public host: loopback, private, link-local and "
                                             "other non-public addresses are refused, here and at delivery."}}

    def validate_url(self, url: str) -> str:
        try:
            webhook_url_check(url)
        except WebhookUrlRefused as exc:
            raise serializers.ValidationError(str(exc)) from exc
        return url


class WebhookDeliverySerializer(serializers.ModelSerializer):
    class Meta:
        model = WebhookDelivery
        fields = ["id", "event", "status", "attempts", "last_status_code", "last_error", "created_at",
                  "delivered_at", "payload"]


class WebhookEndpointListApi(APIView):
    scopes = ()
    pagination_class = NextPagination

    @extend_schema(responses={200: WebhookEndpointSerializer(many=True)})
    def get(self, request):
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(WebhookEndpoint.objects.order_by("pk"), request, view=self)
        return paginator.get_paginated_response(WebhookEndpointSerializer(page, many=True).data)

    @extend_schema(request=WebhookEndpointSerializer, responses={201: WebhookEndpointSerializer})
    def post(self, request):
        data = WebhookEndpointSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        return Response(WebhookEndpointSerializer(data.save()).data, status=status.HTTP_201_CREATED)


class WebhookEndpointDetailApi(APIView):
    scopes = ()

    @extend_schema(responses={200: WebhookEndpointSerializer})
    def get(self, request, endpoint_id):
        return Response(WebhookEndpointSerializer(get_object_or_404(WebhookEndpoint, pk=endpoint_id)).data)

    @extend_schema(request=WebhookEndpointSerializer, responses={200: WebhookEndpointSerializer},
                   description="Change the URL, secret, events, or set `active` false to stop deliveries.")
    def patch(self, request, endpoint_id):
        data = WebhookEndpointSerializer(get_object_or_404(WebhookEndpoint, pk=endpoint_id), data=request.data,
                                         partial=True)
        data.is_valid(raise_exception=True)
        return Response(WebhookEndpointSerializer(data.save()).data)


class WebhookDeliveryListApi(APIView):
    """The delivery log of one endpoint, newest first."""

    scopes = ()
    pagination_class = NextPagination

    @extend_schema(responses={200: WebhookDeliverySerializer(many=True)})
    def get(self, request, endpoint_id):
        endpoint = get_object_or_404(WebhookEndpoint, pk=endpoint_id)
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(endpoint.deliveries.order_by("-created_at", "-pk"), request, view=self)
        return paginator.get_paginated_response(WebhookDeliverySerializer(page, many=True).data)
