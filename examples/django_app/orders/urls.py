from django.urls import path

from . import views

urlpatterns = [
    path("", views.index, name="index"),
    path("orders/", views.create_order, name="create_order"),
    path("orders/<int:order_id>/", views.order_detail, name="order_detail"),
    path("reports/", views.start_report, name="start_report"),
    path("reports/<str:task_id>/", views.report_page, name="report_page"),
    path("reports/<str:task_id>/status", views.report_status, name="report_status"),
]
