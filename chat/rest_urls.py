from django.urls import path

from chat import rest_views

urlpatterns = [
    path("conversations", rest_views.ConversationListView.as_view(), name="api-conversations"),
    path("conversations/<str:public_id>", rest_views.ConversationDetailView.as_view(), name="api-conversation"),
    path("conversations/<str:public_id>/messages", rest_views.ConversationMessagesView.as_view(), name="api-conversation-messages"),
    path("sync", rest_views.SyncView.as_view(), name="api-sync"),
]
