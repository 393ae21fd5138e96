from django.urls import path

from chat import attachment_views, rest_views

urlpatterns = [
    path("conversations", rest_views.ConversationListView.as_view(), name="api-conversations"),
    path("conversations/<str:public_id>", rest_views.ConversationDetailView.as_view(), name="api-conversation"),
    path("conversations/<str:public_id>/messages", rest_views.ConversationMessagesView.as_view(), name="api-conversation-messages"),
    path("conversations/<str:public_id>/attachments", attachment_views.AttachmentListView.as_view(),
         name="api-conversation-attachments"),
    path("conversations/<str:public_id>/attachments/<str:attachment_id>", attachment_views.AttachmentDetailView.as_view(),
         name="api-conversation-attachment"),
    path("conversations/<str:public_id>/attachments/<str:attachment_id>/refetch",
         attachment_views.AttachmentRefetchView.as_view(), name="api-conversation-attachment-refetch"),
    path("sync", rest_views.SyncView.as_view(), name="api-sync"),
]
